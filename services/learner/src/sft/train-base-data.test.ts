import assert from "node:assert/strict";
import { test } from "node:test";

import { SeededRandom } from "@rlmesh/shared/model/index";

import { cartWeightsNaive } from "../grpo/cart-weights.js";
import { makeSftBatch, numberTokenWeights } from "./train-base-data.js";
import type { SftExample } from "./train-base-data.js";

const MASK = 0;
const PAD = 1;
const EOS = 2;
const opts = { maskId: MASK, padId: PAD, responseBudget: 12, tMin: 0.05, lengthBucket: 8 };
const examples: SftExample[] = [
  { promptIds: [10, 11, 12, 13, 14], responseIds: [20, 21, 22, EOS] },
  { promptIds: [15, 16], responseIds: [23, 24, 25, 26, 27, 28, EOS] },
];

test("prompt tokens are never masked and never weighted; masked response tokens carry 1/(t·N)", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const { batch, tokenWeights, maskedTokens } = makeSftBatch(examples, new SeededRandom(seed), opts);
    const T = batch.seqLen;
    assert.equal(T % opts.lengthBucket, 0);
    let responseTokens = 0;
    const perRowWeight: number[] = [];
    examples.forEach((ex, b) => {
      const p = ex.promptIds.length;
      for (let j = 0; j < p; j++) {
        assert.equal(batch.inputIds[b * T + j], ex.promptIds[j]);
        assert.equal(tokenWeights[b * T + j], 0);
      }
      let len = 0;
      for (let j = p; j < T && batch.attentionMask[b * T + j] === 1; j++) len++;
      responseTokens += len;
      // Response = reference + EOS, then 0..(budget − length) PADs kept.
      assert.ok(len >= ex.responseIds.length && len <= opts.responseBudget);
      for (let j = 0; j < len; j++) {
        const k = b * T + p + j;
        assert.equal(batch.targets[k], j < ex.responseIds.length ? ex.responseIds[j] : PAD);
        if (batch.inputIds[k] === MASK) perRowWeight.push(tokenWeights[k]!);
        else assert.equal(tokenWeights[k], 0);
      }
      for (let j = p + len; j < T; j++) assert.equal(batch.attentionMask[b * T + j], 0);
    });
    assert.ok(maskedTokens >= examples.length, "every example masks at least one token");
    // Weights within a row share 1/t; 1/t ∈ [1, 1/tMin].
    for (const w of perRowWeight) {
      const invT = w * responseTokens;
      assert.ok(invT >= 1 - 1e-5 && invT <= 1 / opts.tMin + 1e-3, `1/t = ${invT}`);
    }
  }
});

test("the same seed gives the same batch; another seed gives another", () => {
  const a = makeSftBatch(examples, new SeededRandom(3), opts);
  const b = makeSftBatch(examples, new SeededRandom(3), opts);
  const c = makeSftBatch(examples, new SeededRandom(4), opts);
  assert.deepEqual(a.batch.inputIds, b.batch.inputIds);
  assert.deepEqual(a.tokenWeights, b.tokenWeights);
  assert.notDeepEqual(a.batch.inputIds, c.batch.inputIds);
});

test("trailing PAD is randomly truncated: both short and full-budget responses occur", () => {
  const lengths = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const { batch } = makeSftBatch([examples[0]!], new SeededRandom(seed), opts);
    let len = 0;
    for (let j = 5; j < batch.seqLen; j++) len += batch.attentionMask[j]!;
    lengths.add(len);
  }
  assert.ok(lengths.has(examples[0]!.responseIds.length), "no PAD kept");
  assert.ok(lengths.has(opts.responseBudget), "full budget kept");
});

test("number-token weights: whole-number tokens (with or without a space) get the boost, the rest stay 1", () => {
  const text = ["<|mask|>", "<|pad|>", "<|eos|>", " 12", "3", " x", "x1", " ", "19"];
  const tok = { vocabSize: text.length, decode: (ids: readonly number[]) => (ids[0]! < 3 ? "" : text[ids[0]!]!) };
  assert.deepEqual(Array.from(numberTokenWeights(tok, 8)), [1, 1, 1, 8, 8, 1, 1, 1, 8]);
});

test("targetWeight multiplies a masked token's weight by its target's boost and nothing else", () => {
  const boost = new Float32Array(64).fill(1);
  boost[24] = 5; // one response token of the second example
  for (let seed = 1; seed <= 20; seed++) {
    const plain = makeSftBatch(examples, new SeededRandom(seed), opts);
    const boosted = makeSftBatch(examples, new SeededRandom(seed), { ...opts, targetWeight: boost });
    assert.deepEqual(boosted.batch.inputIds, plain.batch.inputIds, "same draw");
    for (let k = 0; k < plain.tokenWeights.length; k++) {
      const want = plain.tokenWeights[k]! * (plain.batch.targets[k] === 24 ? 5 : 1);
      assert.ok(Math.abs(boosted.tokenWeights[k]! - want) <= 1e-6 * want, `position ${k}: ${boosted.tokenWeights[k]} vs ${want}`);
    }
  }
});

test("cart weighting: same masks as 1/t, weights = CART (prompt + clean response + kept PAD as context) / Σ w", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const inv = makeSftBatch(examples, new SeededRandom(seed), opts);
    const cart = makeSftBatch(examples, new SeededRandom(seed), { ...opts, weighting: { kind: "cart", p: 0.1 } });
    assert.deepEqual(cart.batch.inputIds, inv.batch.inputIds, "the weighting must not change the draw");
    assert.equal(cart.maskedTokens, inv.maskedTokens);
    const { batchSize: B, seqLen: T } = cart.batch;
    // Reference: the definition over this batch's masks, context = real (attended) unmasked tokens.
    const masked = cart.batch.inputIds.map((id) => (id === MASK ? 1 : 0));
    const context = cart.batch.inputIds.map((id, k) => (id !== MASK && cart.batch.attentionMask[k] === 1 ? 1 : 0));
    const w = cartWeightsNaive(masked, context, B, T, 0.1);
    const sum = w.reduce((a, x) => a + x, 0);
    assert.ok(sum > 0);
    let total = 0;
    for (let k = 0; k < B * T; k++) {
      assert.ok(Math.abs(cart.tokenWeights[k]! - w[k]! / sum) < 1e-6, `seed ${seed} position ${k}: ${cart.tokenWeights[k]} vs ${w[k]! / sum}`);
      total += cart.tokenWeights[k]!;
    }
    assert.ok(Math.abs(total - 1) < 1e-5, `weights sum to 1 (weighted mean), got ${total}`);
    // Not a rescaled 1/t: within a row, 1/t weights are all equal, CART ones differ by position.
    const row1 = [...cart.tokenWeights.subarray(T, 2 * T)].filter((x, j) => masked[T + j] === 1);
    if (row1.length >= 3) assert.ok(new Set(row1.map((x) => x.toFixed(7))).size > 1, `seed ${seed}: CART weights of a row should vary`);
  }
});

test("cart weighting: a masked token next to the prompt weighs more than one deep in a masked run", () => {
  // When the start of the response is masked, the prompt is its nearest context: weight decays with distance.
  let checked = 0;
  const ex: SftExample[] = [{ promptIds: [10, 11, 12, 13], responseIds: [20, 21, 22, 23, 24, 25, EOS] }];
  for (let seed = 1; seed <= 20; seed++) {
    const r = makeSftBatch(ex, new SeededRandom(seed), { ...opts, responseBudget: 7, weighting: { kind: "cart", p: 0.5 } });
    const T = r.batch.seqLen;
    const maskedIdx = [...Array(T).keys()].filter((j) => r.batch.inputIds[j] === MASK);
    // The first response position (right after the prompt) when masked has ≥ ½·p·1 from its left neighbour.
    if (r.batch.inputIds[4] === MASK && r.batch.inputIds[5] === MASK && r.batch.inputIds[6] === MASK && r.batch.inputIds[7] === MASK) {
      assert.ok(r.tokenWeights[4]! > r.tokenWeights[6]!, `seed ${seed}: ${r.tokenWeights[4]} vs ${r.tokenWeights[6]}`);
      checked++;
    }
    for (const j of maskedIdx) assert.ok(r.tokenWeights[j]! > 0, "every masked token has some context here");
  }
  assert.ok(checked > 0, "some seed masks the first four response tokens");
});
