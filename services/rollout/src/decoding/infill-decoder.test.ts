import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeInfillBatch, type InfillInput } from "./infill-decoder.js";
import { resolveInfillLengths, resolveInfillParams, type InfillParamsInput } from "./infill-params.js";
import { InvalidDecodeParamsError } from "./decode-params.js";
import { createReferenceDenoiser } from "./reference-denoiser.js";
import type { Denoiser, DenoiserSpec, ForwardInput } from "./denoiser.js";

// Vocabulary of the scripted tests: 0 PAD, 1 EOS, 2..9 ordinary tokens, 10 <|expand|>, 11 MASK.
const SPEC: DenoiserSpec = { vocabSize: 12, nLayers: 1, nHeads: 1, headDim: 2, maxSeqLen: 64, maskId: 11, padId: 0, eosId: 1 };
const EOS = 1;
const EXPAND = 10;
const MASK = 11;
const TOKENS = { eosId: EOS, expandId: EXPAND };

/** Logits row: each [token, logit] pair set, the rest 0. */
function row(...pairs: Array<[number, number]>): number[] {
  const r = new Array<number>(SPEC.vocabSize).fill(0);
  for (const [t, v] of pairs) r[t] = v;
  return r;
}

interface RowView {
  /** This row's canvas (attended tokens only). */
  ids: number[];
  /** Position within the canvas. */
  pos: number;
}

/** A model whose logits come from a script over (the row's canvas, position); it records what it saw. */
function scripted(rowAt: (v: RowView) => number[], seen: number[][][] = []): Denoiser {
  return {
    spec: SPEC,
    async forward(inp: ForwardInput) {
      const V = SPEC.vocabSize;
      const T = inp.length;
      const logits = new Float32Array(inp.batch * T * V);
      const batchSeen: number[][] = [];
      for (let b = 0; b < inp.batch; b++) {
        const ids: number[] = [];
        for (let t = 0; t < T; t++) {
          if (inp.attention[b * T + t] === 1) {
            assert.equal(inp.positions[b * T + t], ids.length, "positions are 0..len-1 over the attended canvas");
            ids.push(inp.ids[b * T + t] as number);
          }
        }
        batchSeen.push(ids);
        for (let t = 0; t < ids.length; t++) logits.set(rowAt({ ids, pos: t }), (b * T + t) * V);
      }
      seen.push(batchSeen);
      return { logits };
    },
  };
}

function params(input: InfillParamsInput, tokens: { eosId: number; expandId?: number } = TOKENS) {
  return resolveInfillParams({ temperature: 0, cache: "none", ...input }, tokens);
}

function item(prefix: number[], suffix: number[], initialLength: number, maxLength = initialLength, seed = 1): InfillInput {
  return { prefix, suffix, initialLength, maxLength, seed };
}

test("fixed length: exactly initial_length masks, one per step at threshold 1, prefix and suffix untouched", async () => {
  const seen: number[][][] = [];
  const model = scripted(({ pos }) => row([2 + (pos % 6), 5], [EXPAND, 9]), seen);
  const [r] = await decodeInfillBatch(model, [item([7, 8], [9, 9, 9], 4)], params({ variable: false, threshold: 1, trace: true }));
  // The expand logit (9) is the largest, but fixed length never expands.
  assert.deepEqual(r!.middleIds, [4, 5, 6, 7]);
  assert.equal(r!.nfe, 4);
  assert.deepEqual([...r!.commitSteps!].sort(), [1, 2, 3, 4]);
  assert.deepEqual(r!.events, []);
  for (const [ids] of seen) {
    assert.equal(ids!.length, 9, "the canvas keeps its length");
    assert.deepEqual(ids!.slice(0, 2), [7, 8]);
    assert.deepEqual(ids!.slice(6), [9, 9, 9]);
  }
});

test("fixed length: Fast-dLLM threshold commits every confident middle token in one step per block", async () => {
  const confident = scripted(() => row([3, 12]));
  const [fast] = await decodeInfillBatch(confident, [item([5], [6], 8)], params({ variable: false, threshold: 0.9, block_length: 4 }));
  assert.deepEqual(fast!.middleIds, [3, 3, 3, 3, 3, 3, 3, 3]);
  assert.equal(fast!.nfe, 2, "one step per block of 4");
  const unsure = scripted(() => row([3, 1]));
  const [slow] = await decodeInfillBatch(unsure, [item([5], [6], 8)], params({ variable: false, threshold: 0.9, block_length: 4 }));
  assert.equal(slow!.nfe, 8, "one token per step when nothing reaches the threshold");
  const [sched] = await decodeInfillBatch(unsure, [item([5], [6], 8)], params({ variable: false, commit: "schedule", steps: 4, block_length: 8 }));
  assert.equal(sched!.nfe, 4, "the step schedule commits 8 tokens in 4 steps");
});

test("fixed length: an EOS fills the masks to its right and EOS tokens are dropped from the middle", async () => {
  // prefix [5]: middle positions 1..5. Position 3 says EOS most confidently; the rest say 4 + pos.
  const model = scripted(({ pos }) => (pos === 3 ? row([EOS, 12]) : row([4 + pos, 6])));
  const [r] = await decodeInfillBatch(model, [item([5], [9], 5)], params({ variable: false, threshold: 1, trace: true }));
  assert.deepEqual(r!.middleIds, [5, 6], "positions 1 and 2; 3 is EOS, 4 and 5 EOS-filled");
  assert.equal(r!.nfe, 3);
  assert.deepEqual(
    r!.events!.map((e) => [e.step, e.kind, e.position]),
    [
      [1, "eos_fill", 3],
      [1, "eos_fill", 4],
    ],
  );
  const [noFill] = await decodeInfillBatch(model, [item([5], [9], 5)], params({ variable: false, threshold: 1, eos_fill: false }));
  assert.deepEqual(noFill!.middleIds, [5, 6, 8, 9], "without eos_fill the masks after the EOS are decoded and the EOS dropped");
  assert.equal(noFill!.nfe, 5);
});

test("variable length: expand replaces a token by two masks until the window is full (max_length)", async () => {
  const seen: number[][][] = [];
  // Everywhere: expand is the favourite, token 3 the runner-up.
  const model = scripted(() => row([EXPAND, 10], [3, 6]), seen);
  const [r] = await decodeInfillBatch(model, [item([5, 6], [7, 8], 2, 6)], params({ variable: true, trace: true }));
  assert.deepEqual(r!.middleIds, [3, 3, 3, 3, 3, 3]);
  assert.equal(r!.nfe, 4 + 6, "four expansions, then six commits");
  assert.deepEqual(
    r!.events!.map((e) => [e.step, e.kind, e.position]),
    [1, 2, 3, 4].map((s) => [s, "expand", 0]),
  );
  assert.deepEqual(r!.commitSteps, [5, 6, 7, 8, 9, 10]);
  // The canvas grew by one per expansion; the suffix moved right and kept its tokens.
  assert.deepEqual(
    seen.map(([ids]) => ids!.length),
    [6, 7, 8, 9, 10, 10, 10, 10, 10, 10],
  );
  assert.deepEqual(seen[4]![0], [5, 6, MASK, MASK, MASK, MASK, MASK, MASK, 7, 8]);
});

test("variable length: the expansion budget (max_length expansions) blocks expand even when the window has room", async () => {
  // One masked position: expand. Two: EOS at the second (most confident), 3 at the first.
  const model = scripted(({ ids, pos }) => {
    const mid = ids.length - 2; // prefix [5], suffix [9]
    if (mid === 1) return row([EXPAND, 10], [3, 4]);
    return pos === 2 ? row([EOS, 12]) : row([3, 4]);
  });
  const [r] = await decodeInfillBatch(model, [item([5], [9], 1, 2)], params({ variable: true, trace: true }));
  assert.deepEqual(r!.middleIds, [3]);
  assert.deepEqual(
    r!.events!.map((e) => [e.step, e.kind, e.position]),
    [
      [1, "expand", 0],
      [2, "delete", 1],
      [3, "expand", 0],
      [4, "delete", 1],
    ],
    "two expansions (= max_length) spend the budget; the fifth step may not expand",
  );
  assert.equal(r!.nfe, 5);
});

test("variable length: an EOS turns the masks to its right into EOS and every EOS is deleted (the suffix shifts left)", async () => {
  const seen: number[][][] = [];
  // prefix [5] (middle starts at 1), 4 masks, suffix [9, 8]. Confidence order: pos 1 -> 3, pos 4 -> 6, pos 2 -> EOS.
  const model = scripted(({ ids, pos }) => {
    if (ids.length !== 7) return row([2, 1]);
    if (pos === 1) return row([3, 14]);
    if (pos === 4) return row([6, 12]);
    if (pos === 2) return row([EOS, 10]);
    return row([4, 1]);
  }, seen);
  const [r] = await decodeInfillBatch(model, [item([5], [9, 8], 4, 8)], params({ variable: true, trace: true }));
  assert.deepEqual(r!.middleIds, [3, 6], "the committed 6 right of the EOS stays; the mask between is deleted");
  assert.deepEqual(
    r!.events!.map((e) => [e.step, e.kind, e.position]),
    [
      [3, "eos_fill", 2],
      [3, "delete", 2],
      [3, "delete", 1],
    ],
  );
  assert.equal(r!.nfe, 3);
  assert.deepEqual(r!.commitSteps, [1, 2]);
  assert.deepEqual(seen.at(-1)![0], [5, 3, MASK, MASK, 6, 9, 8], "the canvas of the last step, before the EOS");
});

test("variable length: EOS at the first middle position empties the middle", async () => {
  const model = scripted(() => row([EOS, 10]));
  const [r] = await decodeInfillBatch(model, [item([5, 6], [7], 6, 16)], params({ variable: true, trace: true }));
  assert.deepEqual(r!.middleIds, []);
  assert.equal(r!.nfe, 1);
  assert.equal(r!.events!.filter((e) => e.kind === "delete").length, 6);
});

test("variable length, EOS cut: the leftmost mask whose EOS probability reaches eos_cut is cut first, before tokens written for a canvas too long", async () => {
  // prefix [5], suffix [9]. While the middle is longer than 3, the model writes 4 at its first three
  // positions (logit 10), is sure of EOS at its last (9) and fairly sure at the others (5: p 0.93);
  // a middle of 3 it fills with 3.
  const model = scripted(({ ids, pos }) => {
    const m = ids.length - 2;
    const k = pos - 1;
    if (m <= 3) return row([3, 6]);
    if (k < 3) return row([4, 10]);
    return k === m - 1 ? row([EOS, 9]) : row([EOS, 5]);
  });
  const input = [item([5], [9], 8, 16)];
  const dreamOn = (await decodeInfillBatch(model, input, params({ variable: true, trace: true })))[0]!;
  assert.deepEqual(dreamOn.middleIds, [4, 4, 4], "DreamOn's order writes the 4s, then deletes the end one position at a time");
  assert.equal(dreamOn.nfe, 3 + 5);
  const cut = (await decodeInfillBatch(model, input, params({ variable: true, trace: true, eos_cut: 0.9 })))[0]!;
  assert.deepEqual(cut.middleIds, [3, 3, 3]);
  assert.equal(cut.nfe, 1 + 3, "one cut, then three tokens");
  assert.deepEqual(
    cut.events!.filter((e) => e.step === 1).map((e) => [e.kind, e.position]),
    [...[4, 5, 6, 7].map((p) => ["eos_fill", p]), ...[7, 6, 5, 4, 3].map((p) => ["delete", p])],
    "the cut at position 3 (the leftmost EOS at p >= 0.9) deletes it and every mask to its right in one step",
  );
  const high = (await decodeInfillBatch(model, input, params({ variable: true, eos_cut: 0.95 })))[0]!;
  assert.deepEqual(high.middleIds, [3, 3, 3], "at 0.95 only the end's EOS (p 0.9986) qualifies: cut there, one position a step");
  assert.equal(high.nfe, 5 + 3, "five cuts of the last position come before the confident 4s");
});

test("variable length, expand cut: the mask most likely to be <|expand|> is expanded first once that probability reaches expand_cut", async () => {
  // prefix [5], suffix [9]. A middle shorter than 5: token 3 is the favourite (p 0.64) and
  // <|expand|> the runner-up (p 0.24) at every position; from 5 on, token 6 and no expand.
  const model = scripted(({ ids }) => (ids.length - 2 < 5 ? row([3, 4], [EXPAND, 3]) : row([6, 4])));
  const input = [item([5], [9], 2, 8)];
  const dreamOn = (await decodeInfillBatch(model, input, params({ variable: true })))[0]!;
  assert.deepEqual(dreamOn.middleIds, [3, 3], "DreamOn's order commits the favourite and never grows");
  const grown = (await decodeInfillBatch(model, input, params({ variable: true, trace: true, expand_cut: 0.2 })))[0]!;
  assert.deepEqual(grown.middleIds, [6, 6, 6, 6, 6]);
  assert.deepEqual(
    grown.events!.map((e) => [e.step, e.kind, e.position]),
    [1, 2, 3].map((s) => [s, "expand", 0]),
    "ties go to the leftmost mask",
  );
  assert.equal(grown.nfe, 3 + 5);
  const capped = (await decodeInfillBatch(model, [item([5], [9], 2, 3)], params({ variable: true, expand_cut: 0.2 })))[0]!;
  assert.deepEqual(capped.middleIds, [3, 3, 3], "the window (max_length 3) still bounds the growth");
  const above = (await decodeInfillBatch(model, input, params({ variable: true, expand_cut: 0.3 })))[0]!;
  assert.deepEqual(above.middleIds, [3, 3], "below the cut the order is DreamOn's");
});

test("length cuts: the model's defaults apply to variable length unless the request sets them; fixed length refuses them by name", () => {
  const tokens = { ...TOKENS, defaultCuts: { eos_cut: 0.3, expand_cut: 0.05 } };
  const v = resolveInfillParams({ variable: true }, tokens);
  assert.deepEqual([v.eos_cut, v.expand_cut], [0.3, 0.05]);
  const own = resolveInfillParams({ variable: true, eos_cut: 0, expand_cut: 0.5 }, tokens);
  assert.deepEqual([own.eos_cut, own.expand_cut], [0, 0.5], "a request's 0 turns a default off");
  const fixed = resolveInfillParams({ variable: false }, tokens);
  assert.deepEqual([fixed.eos_cut, fixed.expand_cut], [0, 0], "a fixed-length request is not refused for the model's defaults");
  assert.deepEqual([resolveInfillParams({}, TOKENS).eos_cut, resolveInfillParams({}, TOKENS).expand_cut], [0, 0], "no defaults: DreamOn's order");
  const bad = (input: InfillParamsInput, field: string) =>
    assert.throws(
      () => resolveInfillParams(input, TOKENS),
      (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === field && e.message.startsWith(field),
    );
  bad({ variable: true, eos_cut: 1.5 }, "eos_cut");
  bad({ variable: true, expand_cut: -0.1 }, "expand_cut");
  bad({ variable: true, eos_cut: Number.NaN }, "eos_cut");
  bad({ variable: false, eos_cut: 0.3 }, "eos_cut");
  bad({ variable: false, expand_cut: 0.3 }, "expand_cut");
});

test("variable length with an explicit threshold < 1: confident ordinary tokens commit together, one edit per step", async () => {
  // prefix [5], suffix [9]. While the middle is shorter than 5, its first position says expand.
  const grow = scripted(({ ids, pos }) => {
    const mid = ids.length - 3; // prefix, suffix and the suffix's EOS
    if (mid < 5) return pos === 1 ? row([EXPAND, 12]) : row([3, 12]);
    return row([4, 12]);
  });
  const [r] = await decodeInfillBatch(grow, [item([5], [9, EOS], 3, 8)], params({ variable: true, threshold: 0.9, trace: true }));
  assert.deepEqual(r!.middleIds, [4, 4, 3, 3, 3]);
  assert.equal(r!.nfe, 3, "three steps for five tokens and two expansions");
  assert.deepEqual(
    r!.events!.map((e) => [e.step, e.kind, e.position]),
    [
      [1, "expand", 0],
      [2, "expand", 0],
    ],
  );
  assert.deepEqual(r!.commitSteps, [3, 3, 2, 1, 1]);
  // Expand and EOS both confident in one step: only the more confident edit (EOS) is applied.
  const both = scripted(({ ids, pos }) => {
    if (ids.length - 3 !== 3) return row([6, 12]);
    return pos === 1 ? row([EXPAND, 12]) : pos === 2 ? row([3, 12]) : row([EOS, 14]);
  });
  const [b] = await decodeInfillBatch(both, [item([5], [9, EOS], 3, 8)], params({ variable: true, threshold: 0.9, trace: true }));
  assert.deepEqual(b!.middleIds, [6, 3]);
  assert.deepEqual(
    b!.events!.map((e) => [e.step, e.kind, e.position]),
    [[1, "delete", 2]],
  );
  // Without a threshold the same model is DreamOn's one token per step.
  assert.equal(resolveInfillParams({ variable: true }, TOKENS).variable_threshold, 1);
});

test("batch > 1 with spans of different lengths gives each row what it gets alone (real attention, padded keys)", async () => {
  const spec: DenoiserSpec = { ...SPEC, vocabSize: 12, nLayers: 2, nHeads: 2, headDim: 4, maxSeqLen: 64 };
  const model = createReferenceDenoiser(spec, 7, 6);
  const items: InfillInput[] = [
    item([2, 3, 4, 5, 6], [7], 3, 12, 11),
    item([8], [2, 3, 4, 5], 6, 10, 12),
    item([4, 4, 5], [], 2, 9, 13),
  ];
  for (const variable of [false, true]) {
    const p = params({ variable, temperature: 0.9, threshold: 1, trace: true });
    const together = await decodeInfillBatch(model, items, p);
    for (let i = 0; i < items.length; i++) {
      const [alone] = await decodeInfillBatch(model, [items[i]!], p);
      assert.deepEqual(
        { ...together[i]!, decodeSeconds: 0 },
        { ...alone!, decodeSeconds: 0 },
        `row ${i}, variable ${variable}`,
      );
    }
    if (!variable) together.forEach((r, i) => assert.ok(r.middleIds.length <= items[i]!.initialLength));
    else {
      together.forEach((r, i) => {
        assert.ok(r.middleIds.length <= items[i]!.maxLength);
        const count = (k: string) => r.events!.filter((e) => e.kind === k).length;
        assert.equal(r.middleIds.length, items[i]!.initialLength + count("expand") - count("delete"), "length = initial + expands - deletes");
      });
      assert.ok(together.some((r) => r.events!.some((e) => e.kind === "expand")), "the batch exercised an expansion");
    }
  }
});

test("expands and deletes are counted with or without trace (the events' counts; metrics read them)", async () => {
  const spec: DenoiserSpec = { ...SPEC, vocabSize: 12, nLayers: 2, nHeads: 2, headDim: 4, maxSeqLen: 64 };
  const items: InfillInput[] = [item([2, 3, 4, 5, 6], [7], 3, 12, 11), item([8], [2, 3, 4, 5], 6, 10, 12), item([4, 4, 5], [], 2, 9, 13)];
  let expands = 0;
  let deletes = 0;
  for (let seed = 1; seed <= 7; seed++) {
    const model = createReferenceDenoiser(spec, seed, 6);
    const traced = await decodeInfillBatch(model, items, params({ variable: true, temperature: 0.9, threshold: 1, trace: true }));
    const plain = await decodeInfillBatch(model, items, params({ variable: true, temperature: 0.9, threshold: 1 }));
    traced.forEach((r, i) => {
      assert.equal(r.expands, r.events!.filter((e) => e.kind === "expand").length, `model ${seed} row ${i} expands`);
      assert.equal(r.deletes, r.events!.filter((e) => e.kind === "delete").length, `model ${seed} row ${i} deletes`);
      assert.equal(plain[i]!.events, undefined);
      assert.deepEqual([plain[i]!.expands, plain[i]!.deletes], [r.expands, r.deletes], `model ${seed} row ${i} without trace`);
      expands += r.expands;
      deletes += r.deletes;
    });
    const fixed = await decodeInfillBatch(model, items, params({ variable: false, temperature: 0.9, threshold: 1 }));
    fixed.forEach((r) => assert.deepEqual([r.expands, r.deletes], [0, 0], "fixed length never edits the canvas"));
  }
  assert.ok(expands > 0 && deletes > 0, `the decodes both expanded (${expands}) and deleted (${deletes})`);
});

test("shifted logits (Dream's convention): position j reads row j - 1", async () => {
  const shifted: Denoiser = {
    spec: { ...SPEC, shiftedLogits: true },
    async forward(inp: ForwardInput) {
      const V = SPEC.vocabSize;
      const logits = new Float32Array(inp.batch * inp.length * V);
      // Row t predicts position t + 1: say token 2 + (t + 1).
      for (let t = 0; t < inp.length; t++) logits.set(row([2 + ((t + 1) % 7), 8]), t * V);
      return { logits };
    },
  };
  const [r] = await decodeInfillBatch(shifted, [item([9, 9], [9], 3)], params({ variable: false, threshold: 1 }));
  assert.deepEqual(r!.middleIds, [4, 5, 6]);
});

test("a vocabulary padded past the tokenizer (imported Dream/Qwen models): those ids are never proposed", async () => {
  // Ids 8 and 9 are padded embedding rows with the largest logits; the tokenizer has 8 tokens.
  const model = scripted(({ pos }) => row([8, 20], [9, 19], [2 + (pos % 4), 5]));
  const padded: Denoiser = { ...model, spec: { ...SPEC, tokenizerVocabSize: 8 } };
  const [r] = await decodeInfillBatch(padded, [item([7, 7], [6], 5)], params({ variable: false, threshold: 1 }));
  assert.equal(r!.middleIds.length, 5);
  for (const id of r!.middleIds) assert.ok(id < 8, `id ${id} is past the tokenizer's vocabulary`);
});

test("NaN logits stop the infill decode with an error naming the position (never a truncated middle)", async () => {
  const model = scripted(() => new Array<number>(SPEC.vocabSize).fill(Number.NaN));
  await assert.rejects(decodeInfillBatch(model, [item([7, 7], [6], 3)], params({ variable: false, threshold: 1 })), /logits for position \d+ are not finite/);
  await assert.rejects(decodeInfillBatch(model, [item([7, 7], [6], 3)], params({ variable: false, threshold: 1, temperature: 1 })), /not finite/);
});

test("infill params: defaults, and bad values named by field", () => {
  const v = resolveInfillParams({}, TOKENS);
  assert.equal(v.variable, true, "variable when the model can expand");
  assert.equal(v.alg, "entropy");
  assert.equal(v.expand_id, EXPAND);
  assert.equal(v.delete_id, EOS);
  const f = resolveInfillParams({}, { eosId: EOS });
  assert.equal(f.variable, false, "fixed on an ordinary model");
  const bad = (fn: () => unknown, field: string) =>
    assert.throws(fn, (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === field && e.message.startsWith(field));
  bad(() => resolveInfillParams({ variable: true }, { eosId: EOS }), "variable_length");
  bad(() => resolveInfillParams({ variable: true, alg: "origin" }, TOKENS), "alg");
  bad(() => resolveInfillLengths("items[1]", 0, undefined, true), "items[1].initial_length");
  bad(() => resolveInfillLengths("items[0]", 8, 4, true), "items[0].max_length");
  bad(() => resolveInfillLengths("items[0]", 4, 100000, true), "items[0].max_length");
  bad(() => resolveInfillLengths("items[0]", 2.5, 4, true), "items[0].initial_length");
  assert.deepEqual(resolveInfillLengths("items[0]", undefined, undefined, true), { initialLength: 4, maxLength: 64 });
  assert.deepEqual(resolveInfillLengths("items[0]", 32, undefined, true), { initialLength: 32, maxLength: 64 });
  assert.deepEqual(resolveInfillLengths("items[0]", 10, undefined, false), { initialLength: 10, maxLength: 10 });
});

test("a middle that does not fit max_seq_len is refused naming the length field", async () => {
  const model = scripted(() => row([3, 5]));
  await assert.rejects(
    decodeInfillBatch(model, [item(new Array(40).fill(2), new Array(10).fill(2), 4, 20)], params({ variable: true })),
    (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === "items[0].max_length",
  );
});

// ---------------------------------------------------------------- fixed length with a KV cache

const CACHE_ITEMS: InfillInput[] = [item([2, 3, 4, 5, 6], [7, 8], 9, 9, 21), item([8], [2, 3, 4, 5], 6, 6, 22), item([4, 4, 5], [3], 11, 11, 23)];
const CACHE_SPEC: DenoiserSpec = { ...SPEC, nLayers: 2, nHeads: 2, headDim: 4 };

/** Decodes `items` and records each forward's kind and lengths. */
async function decodeCounting(model: Denoiser, items: InfillInput[], p: ReturnType<typeof params>) {
  const forwards: Array<{ kind: string; batch: number; length: number; pastLength: number }> = [];
  const out = await decodeInfillBatch(model, items, p, { onForward: (f) => forwards.push({ ...f }) });
  return { out: out.map((r) => ({ ...r, decodeSeconds: 0 })), forwards };
}

test("fixed length, KV cache refreshed before every step (cache_refresh: step): prefix and dual give exactly the uncached middles", async () => {
  const model = createReferenceDenoiser(CACHE_SPEC, 9, 6);
  for (const temperature of [0, 0.8]) {
    const base = { variable: false, threshold: 0.6, block_length: 4, temperature, trace: true } as const;
    const plain = await decodeCounting(model, CACHE_ITEMS, params({ ...base, cache: "none" }));
    for (const cache of ["prefix", "dual"] as const) {
      const cached = await decodeCounting(model, CACHE_ITEMS, params({ ...base, cache, cache_refresh: "step" }));
      assert.deepEqual(cached.out, plain.out, `${cache}, temperature ${temperature}`);
    }
  }
});

test("fixed length, one-layer model: the block-refreshed cache is exact, so prefix and dual give the uncached middles with cached forwards of the block", async () => {
  const one = createReferenceDenoiser({ ...CACHE_SPEC, nLayers: 1 }, 4, 6);
  const base = { variable: false, threshold: 0.7, block_length: 4, temperature: 0.7, trace: true } as const;
  const plain = await decodeCounting(one, CACHE_ITEMS, params({ ...base, cache: "none" }));
  assert.ok(plain.forwards.every((f) => f.kind === "full" && f.pastLength === 0));
  for (const cache of ["prefix", "dual"] as const) {
    const cached = await decodeCounting(one, CACHE_ITEMS, params({ ...base, cache }));
    // The same middles, steps and events; the log-probabilities agree to float32 rounding.
    const exact = (o: typeof plain.out) => o.map(({ logProb: _l, ...rest }) => rest);
    assert.deepEqual(exact(cached.out), exact(plain.out), cache);
    cached.out.forEach((r, i) => assert.ok(Math.abs(r.logProb - plain.out[i]!.logProb) < 1e-5, `${cache}: logProb of row ${i}`));
    const partial = cached.forwards.filter((f) => f.kind === "cached");
    assert.ok(partial.length > 0, `${cache}: some steps ran against the cache`);
    assert.ok(partial.every((f) => f.pastLength > 0));
    // Dual computes the block alone (4 positions); prefix the block to the canvas's end.
    if (cache === "dual") assert.ok(partial.every((f) => f.length <= 4), JSON.stringify(partial));
    // A full forward per block started (and per step for none): fewer full-canvas passes.
    const full = cached.forwards.filter((f) => f.kind === "full").length;
    assert.ok(full < plain.forwards.length, `${cache}: ${full} full forwards vs ${plain.forwards.length}`);
  }
});

/**
 * A cache-aware scripted model (SPEC: one layer, one head, Dh 2): the K of a token is [token,
 * position], so a forward sees the canvas as its past K plus its current tokens, exactly what a
 * cache layout gives it. Its logits come from the script over that canvas, so a stale or
 * misplaced cached position changes what it proposes.
 */
function kvScripted(rowAt: (v: RowView) => number[], shifted = false): Denoiser {
  return {
    spec: shifted ? { ...SPEC, shiftedLogits: true } : SPEC,
    async forward(inp: ForwardInput) {
      const V = SPEC.vocabSize;
      const { batch: B, length: T, pastLength: P } = inp;
      const logits = new Float32Array(B * T * V);
      const keys = new Float32Array(B * T * 2);
      for (let b = 0; b < B; b++) {
        const canvas = new Map<number, number>();
        for (let j = 0; j < P; j++) {
          if (inp.attention[b * (P + T) + j] !== 1) continue;
          const k = inp.past!.keys[0]!;
          canvas.set(k[(b * P + j) * 2 + 1] as number, k[(b * P + j) * 2] as number);
        }
        for (let t = 0; t < T; t++) {
          if (inp.attention[b * (P + T) + P + t] !== 1) continue;
          canvas.set(inp.positions[b * T + t] as number, inp.ids[b * T + t] as number);
          keys[(b * T + t) * 2] = inp.ids[b * T + t] as number;
          keys[(b * T + t) * 2 + 1] = inp.positions[b * T + t] as number;
        }
        const ids = [...canvas.keys()].sort((x, y) => x - y).map((pos, i) => (assert.equal(pos, i, "the canvas is whole: every position once"), canvas.get(pos)!));
        for (let t = 0; t < T; t++) {
          // Shifted (Dream's convention): the row at position q predicts position q + 1.
          const q = (inp.positions[b * T + t] as number) + (shifted ? 1 : 0);
          if (inp.attention[b * (P + T) + P + t] === 1 && q < ids.length) logits.set(rowAt({ ids, pos: q }), (b * T + t) * V);
        }
      }
      return { logits, ...(inp.wantPresent ? { present: { keys: [keys], values: [keys.slice()] } } : {}) };
    },
  };
}

test("fixed length, prefix and dual cache: what each cached forward sees is the whole current canvas, also after an EOS fill past the block and with shifted logits", async () => {
  // The proposal depends on the whole canvas (the suffix, and how many EOS it holds): a forward
  // that missed a range or saw a filled position as the mask it was would propose otherwise.
  const script = ({ ids, pos }: RowView) => {
    if (pos === 7) return row([EOS, 9]); // middle position 2 of the first item: fills the rest
    const eos = ids.filter((t) => t === EOS).length;
    const sum = ids.reduce((a, t) => a + (t === MASK ? 0 : t), 0);
    // Confidence lowest at item 0's block starts (positions 5, 8, 11): they commit last, in cached steps.
    return row([2 + ((sum + 3 * eos + pos) % 7), 4 + ((pos + 1) % 3)]);
  };
  const items = [item([2, 3, 4, 5, 6], [7, 8], 9, 9, 21), item([8], [2, 3, 4, 5], 6, 6, 22)];
  // Shifted logits too: a block's first position reads the row before the block, so a cached
  // forward's window starts one position early.
  for (const [eos_fill, shifted] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    const base = { variable: false, threshold: 1, block_length: 3, temperature: 0, eos_fill, trace: true } as const;
    const plain = await decodeCounting(kvScripted(script, shifted), items, params({ ...base, cache: "none" }));
    if (eos_fill) assert.ok(plain.out[0]!.events!.some((e) => e.kind === "eos_fill" && e.position >= 3), "the fill reached past the first block");
    for (const cache of ["prefix", "dual"] as const) {
      const cached = await decodeCounting(kvScripted(script, shifted), items, params({ ...base, cache }));
      assert.deepEqual(cached.out, plain.out, `${cache}, eos_fill ${eos_fill}, shifted ${shifted}`);
      assert.ok(cached.forwards.some((f) => f.kind === "cached"), "cached forwards ran");
    }
  }
});

test("fixed length with a cache: a row decodes the same alone or in a batch with spans of other lengths", async () => {
  const model = createReferenceDenoiser(CACHE_SPEC, 7, 6);
  for (const cache of ["prefix", "dual"] as const) {
    const p = params({ variable: false, threshold: 0.6, block_length: 4, temperature: 0.9, cache, trace: true });
    const together = await decodeCounting(model, CACHE_ITEMS, p);
    for (let i = 0; i < CACHE_ITEMS.length; i++) {
      const alone = await decodeCounting(model, [CACHE_ITEMS[i]!], p);
      assert.deepEqual(together.out[i], alone.out[0], `${cache}, row ${i}`);
    }
  }
});

test("infill cache params: dual for fixed length unless asked otherwise; variable length runs uncached and refuses a cache naming the field", () => {
  assert.equal(resolveInfillParams({ variable: false }, TOKENS).cache, "dual");
  assert.equal(resolveInfillParams({ variable: false, cache: "none" }, TOKENS).cache, "none");
  assert.equal(resolveInfillParams({}, { eosId: EOS }).cache, "dual", "an ordinary model infills a fixed length");
  assert.equal(resolveInfillParams({}, TOKENS).cache, "none", "variable length (the default with expand) runs uncached");
  assert.throws(
    () => resolveInfillParams({ variable: true, cache: "dual" }, TOKENS),
    (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === "cache" && /fixed-length/.test(e.message),
  );
  assert.throws(() => resolveInfillParams({ variable: false, cache: "everything" as "dual" }, TOKENS), (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === "cache");
});

// Length search (infill-length-search.ts). A scripted model whose "true" middle is [5, 6, 7]:
// over a canvas with exactly 3 middle positions it says those tokens (logit 8); over any other
// middle length it says 4 (logit 2); a mask right after 5, 6, 7 is EOS (logit 8). The canvas is
// prefix + middle + [3, EOS]; the variable decode never expands or deletes (no expand/EOS logit),
// so it keeps its initial 2 masks: [4, 4]. `early`: over 5 middle positions it says 8 and ends
// with EOS at the last one (a fixed-length decode that ends early).
const TRUE_MIDDLE = [5, 6, 7];
function lengthModel(seen: number[][][] = [], early = false): Denoiser {
  return scripted(({ ids, pos }) => {
    const pre = ids.indexOf(MASK) >= 0 || ids.some((t) => t >= 4 && t <= 8) ? ids.findIndex((t, j) => j > 0 && (t === MASK || (t >= 4 && t <= 8))) : -1;
    const mid = ids.length - 2 - pre;
    if (pre < 0 || pos < pre || pos >= pre + mid) return row();
    const k = pos - pre;
    if (ids[pos] === MASK && k === 3 && ids.slice(pre, pre + 3).join() === TRUE_MIDDLE.join()) return row([EOS, 8]);
    if (early && mid === 5) return k === 4 ? row([EOS, 8]) : row([8, 8]);
    return mid === 3 ? row([TRUE_MIDDLE[k]!, 8]) : row([4, 2]);
  }, seen);
}

/** ln softmax of a row whose one favoured id has `logit` and 10 other allowed ids 0 (MASK excluded): the favoured id's, or another's. */
function lnP(logit: number, favoured = true): number {
  return (favoured ? logit : 0) - Math.log(Math.exp(logit) + 10);
}

/**
 * The score a candidate of the scripted model gets by hand: fit (each token read over a fully
 * masked middle of its length) + end (EOS at the first of the 3 masks after it, + ½ × EOS at each
 * of the other two; that canvas has L + 3 ≠ 3 middle positions, so only the true middle's first
 * pad says EOS) − ¼ per token of distance from the variable decode's length 2.
 */
function handScore(middle: number[]): number {
  const L = middle.length;
  const laterPads = 2 * 0.5 * lnP(2, false);
  if (middle.join() === TRUE_MIDDLE.join()) return 3 * lnP(8) + lnP(8) + laterPads - 0.25;
  return L * lnP(2) + lnP(2, false) + laterPads - 0.25 * Math.abs(L - 2);
}

test("length search: lengths around the variable decode's, clamped to [1, max_length]", async () => {
  const { searchLengths } = await import("./infill-length-search.js");
  assert.deepEqual(searchLengths(2, 3, 64), [1, 2, 3, 4, 5]);
  assert.deepEqual(searchLengths(0, 2, 64), [1, 2]);
  assert.deepEqual(searchLengths(10, 2, 11), [8, 9, 10, 11]);
});

test("length search: every distinct candidate is scored fit + end, the best (the true length) wins, NFE counts every forward", async () => {
  const seen: number[][][] = [];
  const p = { ...params({ variable: true, length_search: 3, trace: true }), search_cache: "none" as const };
  const [r] = await decodeInfillBatch(lengthModel(seen), [item([2], [3, EOS], 2, 20)], p);
  assert.deepEqual(r!.middleIds, TRUE_MIDDLE);
  // Candidates: the variable decode's [4, 4] and the fixed decodes at 1..5 ([4, 4] again is not repeated).
  const cands = r!.candidates!;
  assert.deepEqual(cands.map((c) => c.middleIds.length).sort(), [1, 2, 3, 4, 5]);
  assert.deepEqual(cands.filter((c) => c.variable).map((c) => c.middleIds), [[4, 4]]);
  for (const c of cands) assert.ok(Math.abs(c.score - handScore(c.middleIds)) < 1e-5, `${c.middleIds.join(",")}: ${c.score} vs ${handScore(c.middleIds)}`);
  const scores = cands.map((c) => c.score);
  assert.deepEqual([...scores].sort((a, b) => b - a), scores, "best first");
  assert.deepEqual(cands.map((c) => c.middleIds.length), [3, 1, 2, 4, 5], "the order the hand scores give");
  // NFE: the variable decode (2 steps); the fixed decodes at Fast-dLLM's threshold 0.9: lengths 1, 2,
  // 4, 5 one token per step (their 4s have p = 0.74), length 3 all at once (p = 0.997); 2 scoring
  // forwards per candidate.
  assert.equal(r!.nfe, 2 + (1 + 2 + 1 + 4 + 5) + 2 * 5);
  assert.deepEqual(r!.commitSteps, [1, 1, 1], "the winner's own commit steps (its fixed decode: one step)");
  // The winner's own decode describes the sample: a fixed-length decode, one step, no edits.
  assert.deepEqual([r!.steps, r!.expands, r!.deletes, r!.events], [1, 0, 0, []]);
  assert.equal(cands.find((c) => c.variable)!.decode.steps, 2, "the variable decode's own record stays with its candidate");
});

test("length search: a batch with different prefixes and max lengths searches each row on its own", async () => {
  const p = { ...params({ variable: true, length_search: 2 }), search_cache: "none" as const };
  const rows = await decodeInfillBatch(lengthModel(), [item([2], [3, EOS], 2, 20), item([2, 9, 9], [3, EOS], 2, 2)], p);
  assert.deepEqual(rows[0]!.middleIds, TRUE_MIDDLE);
  // max_length 2: lengths 1..2 only, so [5, 6, 7] is out of reach; [4] scores above [4, 4] (one more unlikely token).
  assert.deepEqual(rows[1]!.candidates!.map((c) => c.middleIds.length), [1, 2]);
  assert.deepEqual(rows[1]!.middleIds, [4]);
  assert.ok(Math.abs(rows[1]!.candidates![0]!.score - handScore([4])) < 1e-5);
});

test("length search: parameters are checked by name; the model's default applies to variable length only", () => {
  assert.throws(() => params({ variable: false, length_search: 2 }), (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === "length_search");
  assert.throws(() => params({ variable: true, length_search: 17 }), /length_search must be an integer in \[0, 16\]/);
  assert.throws(() => params({ variable: true, length_search: 1.5 }), /length_search must be an integer/);
  assert.throws(() => params({ variable: true, syntax_check: "rust" }), (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === "syntax_check");
  const tokens = { ...TOKENS, defaultCuts: { length_search: 3 } };
  assert.equal(params({ variable: true }, tokens).length_search, 3);
  assert.equal(params({ variable: true, length_search: 0 }, tokens).length_search, 0, "a request's 0 turns it off");
  assert.equal(params({ variable: false }, tokens).length_search, 0);
  assert.equal(params({ variable: true }, tokens).syntax_check, "python");
  assert.equal(params({ variable: true }, tokens).search_cache, "dual");
});

test("length search: no candidate is so long that its end-score canvas (three masks more) passes max_seq_len", async () => {
  const seen: number[][][] = [];
  const p = { ...params({ variable: true, length_search: 3 }), search_cache: "none" as const };
  // prefix 40 + max_length 22 + suffix 2 = 64 = max_seq_len; the variable decode keeps its 20 masks,
  // the fixed decodes stop at 64 − 40 − 2 − 3 = 19, and the variable decode's own end canvas has room for 2 masks.
  const [r] = await decodeInfillBatch(lengthModel(seen), [item(new Array<number>(40).fill(2), [3, EOS], 20, 22)], p);
  assert.deepEqual(r!.candidates!.map((c) => c.middleIds.length).sort((a, b) => a - b), [17, 18, 19, 20]);
  assert.ok(seen.every((batch) => batch.every((ids) => ids.length <= SPEC.maxSeqLen)), "every canvas fits");
  const own = r!.candidates!.find((c) => c.variable)!;
  assert.ok(Math.abs(own.score - (20 * lnP(2) + 1.5 * lnP(2, false))) < 1e-5, "fit + the two pads that fit, at distance 0");
});

test("length search: a fixed-length decode that ends early (EOS inside its span) is not a candidate", async () => {
  const p = { ...params({ variable: true, length_search: 3 }), search_cache: "none" as const };
  const [r] = await decodeInfillBatch(lengthModel([], true), [item([2], [3, EOS], 2, 20)], p);
  // Length 5 decodes [8, 8, 8, 8] then EOS: dropped; length 4 is searched on its own.
  assert.deepEqual(r!.candidates!.map((c) => c.middleIds.length).sort(), [1, 2, 3, 4]);
  assert.ok(r!.candidates!.every((c) => !c.middleIds.includes(8)));
});
