import assert from "node:assert/strict";
import { test } from "node:test";

import { SeededRandom } from "@rlmesh/shared/model/index";

import { DREAMON_DEFAULTS, dreamOnRow, growVocab, keepNewVocabGrads, makeDreamOnBatch, withExpandToken } from "./train-base-infill.js";
import type { DreamOnOptions, InfillExample } from "./train-base-infill.js";

const MASK = 0;
const PAD = 1;
const EOS = 2;
const EXPAND = 99;
const opts: DreamOnOptions = { maskId: MASK, padId: PAD, eosId: EOS, expandId: EXPAND, ...DREAMON_DEFAULTS, maxSeqLen: 320, lengthBucket: 16 };

/** An rng that returns the given uniforms in order (and fails when they run out). */
function scripted(values: number[]): SeededRandom {
  let i = 0;
  const next = () => {
    if (i >= values.length) throw new Error("scripted rng ran out");
    return values[i++]!;
  };
  return { next, int: (n: number) => Math.floor(next() * n), normal: () => 0 } as unknown as SeededRandom;
}

test("a DreamOn row by hand: EOS padding, t-masking, EOS always masked, an expand label hides the next position", () => {
  const ex: InfillExample = { prefixIds: [50, 51], middleIds: [10, 11, 12, 13], suffixIds: [60] };
  const rng = scripted([
    0.7, // EOS count: int(3) = 2
    0.5, // t
    0.1, 0.2, 0.9, 0.3, 0.9, 0.1, // per-position mask draws (< t masks): 10, 11, 13 and the 2nd EOS
    0.9, // not the uniform half: p = 0.5 · (1 − 4/6) = 1/6
    0.1, // pair (0, 1): 0.1 < 1/6 → merge
    0.5, // pair (3, EOS): no merge; the scan stops at the first EOS
  ]);
  const r = dreamOnRow(ex, rng, { ...opts, maxDelete: 3 });
  assert.equal(r.eosCount, 2);
  assert.equal(r.t, 0.5);
  assert.ok(Math.abs(r.p - 1 / 6) < 1e-12);
  assert.deepEqual(r.hidden, [1]);
  assert.deepEqual(r.inputIds, [MASK, 12, MASK, MASK, MASK]);
  assert.deepEqual(r.targets, [EXPAND, 12, 13, EOS, EOS]);
  assert.deepEqual(r.lossKind, [1, 0, 1, 2, 2]);
});

test("the uniform half keeps p = 0.5; the other half uses 0.5·(1 − masked fraction)", () => {
  const ex: InfillExample = { prefixIds: [5], middleIds: [10, 11, 12, 13], suffixIds: [] };
  // EOS 0, t 0.5, masks 1,1,0,0 → 2/4 masked; then the uniform draw.
  const base = [0, 0.5, 0.1, 0.1, 0.9, 0.9];
  assert.equal(dreamOnRow(ex, scripted([...base, 0.2, 0.9, 0.9, 0.9]), opts).p, 0.5);
  assert.equal(dreamOnRow(ex, scripted([...base, 0.7, 0.9, 0.9, 0.9]), opts).p, 0.25);
});

test("rows over many draws: EOS count in 0..63, EOS always masked, each expand label stands for its run of hidden positions, runs of 3+ occur", () => {
  const rng = new SeededRandom(11);
  const ex: InfillExample = { prefixIds: [7, 8, 9], middleIds: Array.from({ length: 12 }, (_, i) => 10 + i), suffixIds: [60, 61] };
  const eosCounts = new Set<number>();
  let expands = 0;
  let longRuns = 0;
  for (let n = 0; n < 400; n++) {
    const r = dreamOnRow(ex, rng, opts);
    eosCounts.add(r.eosCount);
    assert.ok(r.eosCount >= 0 && r.eosCount <= 63);
    assert.equal(r.inputIds.length, 12 + r.eosCount - r.hidden.length);
    const nExpand = r.targets.filter((t) => t === EXPAND).length;
    assert.ok(nExpand <= r.hidden.length && (nExpand > 0) === (r.hidden.length > 0));
    expands += nExpand;
    // Each hidden run (consecutive hidden indices) sits right after the visible position it merged into.
    const hidden = new Set(r.hidden);
    let runs = 0;
    for (const h of r.hidden) {
      if (hidden.has(h - 1)) {
        longRuns++;
        continue;
      }
      runs++;
    }
    assert.equal(runs, nExpand, "one <|expand|> per run of hidden positions");
    r.targets.forEach((t, i) => {
      if (t === EOS) assert.equal(r.inputIds[i], MASK, "EOS positions are always masked");
      if (t === EXPAND) assert.equal(r.inputIds[i], MASK);
      if (r.inputIds[i] !== MASK) assert.equal(r.lossKind[i], 0);
      else assert.equal(r.lossKind[i], t === EOS ? 2 : 1);
    });
    // Visible positions + hidden ones = middle + EOS tail.
    assert.equal(r.targets.length + r.hidden.length, 12 + r.eosCount);
  }
  assert.ok(longRuns > 20, `runs of three or more merged masks occur: ${longRuns}`);
  assert.ok(eosCounts.has(0) && Math.max(...eosCounts) >= 55, `EOS counts cover 0..63: ${Math.min(...eosCounts)}..${Math.max(...eosCounts)}`);
  assert.ok(expands > 100, `expand labels are common: ${expands}`);
});

test("a batch: prefix | visible response | suffix, PAD after; weights (1−t)/D on tokens and (1−t)/(E_row·D) on a row's EOS, D = N + rows with EOS", () => {
  const exs: InfillExample[] = [
    { prefixIds: [50, 51, 52], middleIds: [10, 11, 12], suffixIds: [60, 61] },
    { prefixIds: [53], middleIds: [13, 14, 15, 16, 17], suffixIds: [62] },
  ];
  const rng = new SeededRandom(5);
  const state = rng.getState();
  const b = makeDreamOnBatch(exs, rng, opts);
  // Same rows again, from the same state, to know t and the layout.
  rng.setState(state);
  const rows = exs.map((ex) => dreamOnRow(ex, rng, opts));
  const T = b.batch.seqLen;
  assert.equal(T % 16, 0);
  let N = 0;
  let E = 0;
  rows.forEach((r) => r.lossKind.forEach((k) => (k === 1 ? N++ : k === 2 ? E++ : 0)));
  assert.equal(b.tokenLosses, N);
  assert.equal(b.eosLosses, E);
  const rowE = rows.map((r) => r.lossKind.filter((k) => k === 2).length);
  const D = N + rowE.filter((e) => e > 0).length;
  rows.forEach((r, i) => {
    const ex = exs[i]!;
    const seq = [...ex.prefixIds, ...r.inputIds, ...ex.suffixIds];
    for (let j = 0; j < T; j++) {
      const k = i * T + j;
      assert.equal(b.batch.inputIds[k], j < seq.length ? seq[j] : PAD);
      assert.equal(b.batch.attentionMask[k], j < seq.length ? 1 : 0);
      assert.equal(b.batch.positionIds[k], j);
      const inResp = j >= ex.prefixIds.length && j < ex.prefixIds.length + r.inputIds.length;
      const kind = inResp ? r.lossKind[j - ex.prefixIds.length]! : 0;
      const want = kind === 0 ? 0 : kind === 1 ? (1 - r.t) / D : (1 - r.t) / (rowE[i]! * D);
      assert.ok(Math.abs(b.tokenWeights[k]! - want) < 1e-7, `weight at row ${i} pos ${j}: ${b.tokenWeights[k]} vs ${want}`);
      if (inResp) assert.equal(b.batch.targets[k], r.targets[j - ex.prefixIds.length]);
    }
  });
});

test("withExpandToken adds <|expand|> after the largest id once; growVocab copies the MASK row into new rows", () => {
  const tok = { model: { vocab: { a: 4, b: 5 } }, added_tokens: [{ id: 0, content: "<|mask|>" }] };
  const { json, expandId, added } = withExpandToken(tok);
  assert.equal(expandId, 6);
  assert.ok(added);
  assert.equal(withExpandToken(json).expandId, 6);
  assert.equal(withExpandToken(json).added, false);
  assert.equal(tok.added_tokens.length, 1, "the input is not modified");
  const d = 2;
  const emb = new Float32Array([1, 2, 3, 4, 5, 6]); // V 3
  const grown = growVocab(new Map([["tok_embedding", emb]]), 3, 4, d, 1, new SeededRandom(1)).get("tok_embedding")!;
  assert.equal(grown.length, 8);
  assert.deepEqual([...grown.subarray(0, 6)], [...emb]);
  assert.ok(Math.abs(grown[6]! - 3) < 0.1 && Math.abs(grown[7]! - 4) < 0.1);
});

test("timeWeight inv_t: t ~ U(0.05, 1) and the weight 1/t replaces 1 − t, everything else equal", () => {
  const ex: InfillExample = { prefixIds: [50], middleIds: [10, 11, 12, 13, 14, 15], suffixIds: [60] };
  const rng = new SeededRandom(9);
  const state = rng.getState();
  const b = makeDreamOnBatch([ex, ex, ex], rng, { ...opts, timeWeight: "inv_t" });
  rng.setState(state);
  const rows = [0, 1, 2].map(() => dreamOnRow(ex, rng, { ...opts, timeWeight: "inv_t" }));
  const D = b.tokenLosses + rows.filter((r) => r.lossKind.includes(2)).length;
  rows.forEach((r, i) => {
    assert.ok(r.t >= 0.05 && r.t < 1);
    const k = r.lossKind.indexOf(1);
    if (k < 0) return;
    assert.ok(Math.abs(b.tokenWeights[i * b.batch.seqLen + 1 + k]! - 1 / r.t / D) < 1e-6);
  });
  // Zero-noise draws are impossible under inv_t: the first uniform 0 gives t = 0.05.
  assert.equal(dreamOnRow(ex, scripted([0, 0, ...new Array<number>(20).fill(0.99)]), { ...opts, timeWeight: "inv_t" }).t, 0.05);
});

test("merges chain as in DreamOn: a run of three masks collapses into ONE <|expand|> with two hidden positions", () => {
  const ex: InfillExample = { prefixIds: [50], middleIds: [10, 11, 12, 13], suffixIds: [60] };
  const rng = scripted([
    0, // EOS count: int(·) = 0
    0.5, // t
    0.1, 0.1, 0.1, 0.9, // masks 10, 11, 12; 13 visible
    0.2, // the uniform half: p = 0.5
    0.1, // pair (0, 1): merge → 0 is the anchor, 1 hidden
    0.1, // pair (1, 2): 1 is hidden but still merges → 2 hidden, the label stays on 0
  ]);
  const r = dreamOnRow(ex, rng, opts);
  assert.deepEqual(r.hidden, [1, 2]);
  assert.deepEqual(r.inputIds, [MASK, 13]);
  assert.deepEqual(r.targets, [EXPAND, 13]);
  assert.deepEqual(r.lossKind, [1, 0]);
});

test("keepNewVocabGrads zeroes every gradient but the new rows (tied embedding) or new columns (untied head)", () => {
  const d = 2;
  const g = () => ({
    tok_embedding: { data: Float32Array.from({ length: 4 * d }, (_, i) => i + 1) },
    lm_head: { data: Float32Array.from({ length: d * 4 }, (_, i) => i + 1) },
    "layers.0.attn.wq": { data: new Float32Array([5, 6]) },
  });
  const grads = g();
  keepNewVocabGrads(grads, 3, 4, d);
  assert.deepEqual([...grads.tok_embedding.data], [0, 0, 0, 0, 0, 0, 7, 8]);
  assert.deepEqual([...grads.lm_head.data], [0, 0, 0, 4, 0, 0, 0, 8]);
  assert.deepEqual([...grads["layers.0.attn.wq"].data], [0, 0]);
  assert.throws(() => keepNewVocabGrads(g(), 4, 4, d), /oldVocab < newVocab/);
  assert.throws(() => keepNewVocabGrads(g(), 2, 3, d), /tok_embedding gradient has 8 values, expected 3×2/);
});

test("each row's EOS losses weigh as one token of that row, however many EOS the other rows have", () => {
  const exs: InfillExample[] = Array.from({ length: 4 }, (_, i) => ({ prefixIds: [50 + i], middleIds: [10, 11, 12, 13, 14, 15], suffixIds: [60] }));
  const b = makeDreamOnBatch(exs, new SeededRandom(3), opts);
  const T = b.batch.seqLen;
  let rowsChecked = 0;
  let total = 0;
  let eosTotal = 0;
  for (let row = 0; row < exs.length; row++) {
    let eos = 0;
    let oneToken = 0;
    for (let j = 0; j < T; j++) {
      const w = b.tokenWeights[row * T + j]!;
      total += w;
      if (w === 0) continue;
      if (b.batch.targets[row * T + j] === EOS) eos += w;
      else oneToken ||= w;
    }
    eosTotal += eos;
    // A row's EOS weigh together exactly one of its masked tokens (the same (1 − t) factor).
    if (eos > 0 && oneToken > 0) {
      assert.ok(Math.abs(eos - oneToken) < 1e-6, `row ${row}: EOS mass ${eos} vs one token ${oneToken}`);
      rowsChecked++;
    }
  }
  assert.ok(rowsChecked >= 2, `rows with both EOS and masked tokens: ${rowsChecked}`);
  // With the whole batch's EOS as one token (the old rule) EOS would be ≤ 1/(N+1) of the mass.
  assert.ok(eosTotal / total > 1.5 / (b.tokenLosses + 1), `EOS share ${eosTotal / total}`);
});

test("exactShare: that share of rows is the middle at its exact length (no EOS, no merges), t-masked; rows without it keep their random stream", () => {
  const ex: InfillExample = { prefixIds: [5], middleIds: Array.from({ length: 10 }, (_, i) => 10 + i), suffixIds: [60] };
  // Unset: the same draws as before the option existed.
  const a = dreamOnRow(ex, new SeededRandom(3), opts);
  const b = dreamOnRow(ex, new SeededRandom(3), { ...opts, exactShare: 0 });
  assert.deepEqual(a, b);
  const rng = new SeededRandom(4);
  let exact = 0;
  const n = 400;
  for (let k = 0; k < n; k++) {
    const r = dreamOnRow(ex, rng, { ...opts, exactShare: 0.5 });
    if (r.eosCount === 0 && r.p === 0) {
      exact++;
      assert.deepEqual(r.hidden, []);
      assert.deepEqual(r.targets, ex.middleIds, "labels are the middle itself");
      r.inputIds.forEach((t, i) => assert.ok(t === MASK || t === ex.middleIds[i]));
    }
  }
  // Besides the exact rows, a DreamOn row has eosCount 0 about 1 time in 64 (and p 0 only then at t = 1).
  assert.ok(exact > 0.4 * n && exact < 0.6 * n, `about half the rows are exact: ${exact}/${n}`);
  const all = dreamOnRow(ex, new SeededRandom(5), { ...opts, exactShare: 1 });
  assert.equal(all.eosCount, 0);
  assert.equal(all.p, 0);
});

test("uniformCountShare: the merge count is uniform over 0..mergeable pairs, so a middle squeezed into a few masks is common; labels as the per-pair rule", () => {
  const ex: InfillExample = { prefixIds: [5], middleIds: Array.from({ length: 15 }, (_, i) => 10 + i), suffixIds: [60] };
  const count = (o: DreamOnOptions) => {
    const rng = new SeededRandom(9);
    let squeezed = 0;
    for (let k = 0; k < 600; k++) {
      const r = dreamOnRow(ex, rng, o);
      const visibleMiddle = 15 - r.hidden.filter((h) => h < 15).length;
      if (visibleMiddle <= 5) squeezed++;
      // Every run of hidden positions hangs off ONE visible <|expand|> (as in the per-pair rule).
      const hidden = new Set(r.hidden);
      const runs = r.hidden.filter((h) => !hidden.has(h - 1)).length;
      assert.equal(r.targets.filter((t) => t === EXPAND).length, runs);
      for (const h of r.hidden) assert.ok(h >= 1 && h <= 15, `only middle positions (and the first EOS) hide: ${h}`);
    }
    return squeezed;
  };
  const perPair = count(opts);
  const uniform = count({ ...opts, uniformCountShare: 1 });
  assert.ok(uniform > 3 * Math.max(1, perPair), `rows with the 15-token middle in <= 5 positions: per pair ${perPair}, uniform count ${uniform}`);
  // Exact rows stay exact with the option on.
  const r = dreamOnRow(ex, new SeededRandom(1), { ...opts, exactShare: 1, uniformCountShare: 1 });
  assert.deepEqual(r.hidden, []);
});

test("mergePlacement tail: each run of masked middle positions loses its last m positions and its last visible one is the <|expand|>; EOS padding never merges", () => {
  const ex: InfillExample = { prefixIds: [5], middleIds: [10, 11, 12, 13, 14, 15], suffixIds: [60] };
  const rng = scripted([
    0.5, // EOS count: int(2) = 1
    0.5, // t
    0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9, // masks: 10 11 12 | 14 15 | (EOS always masked)
    0.1, // the uniform half: p = 0.5
    // run 10 11 12: two pair draws, both < p → m = 2
    0.2, 0.3,
    // run 14 15: one pair draw ≥ p → m = 0
    0.8,
  ]);
  const r = dreamOnRow(ex, rng, { ...opts, maxDelete: 2, mergePlacement: "tail" });
  assert.equal(r.eosCount, 1);
  assert.deepEqual(r.hidden, [1, 2]);
  assert.deepEqual(r.inputIds, [MASK, 13, MASK, MASK, MASK]);
  assert.deepEqual(r.targets, [EXPAND, 13, 14, 15, EOS]);
  assert.deepEqual(r.lossKind, [1, 0, 1, 1, 2]);
  // Over many rows: a run's labels are its exact tokens, then at most one <|expand|>, last.
  const g = new SeededRandom(2);
  const long: InfillExample = { prefixIds: [5], middleIds: Array.from({ length: 15 }, (_, i) => 10 + i), suffixIds: [60] };
  let squeezed = 0;
  for (let n = 0; n < 300; n++) {
    const row = dreamOnRow(long, g, { ...opts, mergePlacement: "tail", uniformCountShare: 0.5 });
    // Rebuild the middle: a visible non-expand label is the next true token; an expand stands for its hidden run.
    let pos = 0;
    row.targets.forEach((t, i) => {
      if (t === EOS) return;
      if (t === EXPAND) {
        assert.equal(row.inputIds[i], MASK);
        assert.ok(row.hidden.includes(pos + 1), "an expand is followed by hidden positions");
        pos++;
        while (row.hidden.includes(pos)) pos++;
        // The next visible position is not masked (the run ended) or is past the middle.
        assert.ok(pos >= 15 || row.inputIds[i + 1] !== MASK || row.targets[i + 1] === EOS, "the expand is the run's last visible mask");
        return;
      }
      assert.equal(t, long.middleIds[pos], "labels before the expand are the exact tokens");
      pos++;
    });
    assert.equal(pos, 15);
    if (15 - row.hidden.length <= 5) squeezed++;
  }
  assert.ok(squeezed > 3, `middles squeezed into <= 5 positions occur: ${squeezed}`);
});
