import { test } from "node:test";
import assert from "node:assert/strict";
import { drawMaskPairs, maskedInputIds, maskPairCoefficients, maskPairFromSeeds } from "./coupled-masks.js";
import { createRng } from "./seeded-rng.js";
import { GrpoConfigError } from "./grpo-config.js";
import { cartWeightsNaive, LossWeightError } from "./cart-weights.js";

/** Rows of [prompt | response | pad] with random lengths. */
function layout(seed: number, B: number, T: number): Uint8Array {
  const rng = createRng(seed);
  const m = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const p = 1 + rng.nextInt(T / 2);
    const r = rng.nextInt(T - p + 1);
    for (let j = p; j < p + r; j++) m[b * T + j] = 1;
  }
  return m;
}

test("the two masks are complementary over response tokens and never touch prompt or padding", () => {
  const B = 16;
  const T = 40;
  const resp = layout(1, B, T);
  for (const pair of drawMaskPairs(42, resp, B, T, 3)) {
    for (let i = 0; i < B * T; i++) {
      const [a, b] = [pair.masks[0][i]!, pair.masks[1][i]!];
      assert.equal(a & b, 0, `position ${i} masked in both passes`);
      assert.equal(a | b, resp[i], `position ${i}: masks ${a},${b} vs response ${resp[i]}`);
    }
  }
});

test("t lies in [tMin, tMax], weights are 1/t and 1/(1-t), and pass 1 masks about a fraction t", () => {
  const T = 4000;
  const resp = new Uint8Array(4 * T).fill(1);
  const [pair] = drawMaskPairs(7, resp, 4, T, 1, { tMin: 0.3, tMax: 0.6 });
  for (let b = 0; b < 4; b++) {
    const t = pair!.t[b]!;
    assert.ok(t >= 0.3 && t <= 0.6, `t=${t}`);
    assert.equal(pair!.weights[0][b], 1 / t);
    assert.equal(pair!.weights[1][b], 1 / (1 - t));
    let n1 = 0;
    for (let j = b * T; j < (b + 1) * T; j++) n1 += pair!.masks[0][j]!;
    assert.ok(Math.abs(n1 / T - t) < 0.03, `masked fraction ${n1 / T} vs t ${t}`);
  }
  assert.throws(() => drawMaskPairs(7, resp, 4, T, 1, { tMin: 0, tMax: 0.5 }), GrpoConfigError);
  assert.throws(() => drawMaskPairs(7, resp, 4, T, 0), GrpoConfigError);
});

test("masks are a pure function of the stored seeds: old and new policy passes see the same masks", () => {
  const resp = layout(3, 8, 24);
  const [a] = drawMaskPairs(99, resp, 8, 24, 1);
  const [b] = drawMaskPairs(99, resp, 8, 24, 1);
  const replay = maskPairFromSeeds(a!.seeds, resp, 24);
  for (const other of [b!, replay]) {
    assert.deepEqual(other.masks, a!.masks);
    assert.deepEqual(other.t, a!.t);
  }
  const pairs = drawMaskPairs(99, resp, 8, 24, 2);
  assert.notDeepEqual(pairs[0]!.seeds, pairs[1]!.seeds, "each mask epoch draws new masks");
  const [c] = drawMaskPairs(100, resp, 8, 24, 1);
  assert.notDeepEqual(c!.masks, a!.masks);
});

test("masked inputs carry MASK exactly at the pass's positions", () => {
  const ids = maskedInputIds([5, 6, 7, 8], [0, 1, 0, 1], 99);
  assert.deepEqual(Array.from(ids), [5, 99, 7, 99]);
});

test("weight placement: inside the ratio (coef w, token weight 1) or in the loss (coef 1, weight w/2 with mean 1)", () => {
  const T = 64;
  const resp = new Uint8Array(T).fill(1);
  resp[0] = 0;
  const [pair] = drawMaskPairs(5, resp, 1, T, 1);
  const inRatio = maskPairCoefficients(pair!, "ratio");
  const inLoss = maskPairCoefficients(pair!, "loss");
  const [w1, w2] = [pair!.weights[0][0]!, pair!.weights[1][0]!];
  for (let j = 0; j < T; j++) {
    const k = pair!.masks[0][j] ? 0 : pair!.masks[1][j] ? 1 : -1;
    if (k < 0) {
      assert.equal(inRatio.tokenWeight[j], 0);
      assert.equal(inLoss.tokenWeight[j], 0);
      continue;
    }
    const w = k === 0 ? w1 : w2;
    assert.ok(Math.abs(inRatio.logRatioCoef[k as 0 | 1][j]! - w) < 1e-6);
    assert.equal(inRatio.tokenWeight[j], 1);
    assert.equal(inLoss.logRatioCoef[k as 0 | 1][j], 1);
    assert.ok(Math.abs(inLoss.tokenWeight[j]! - w / 2) < 1e-6);
  }
  // Over many draws the loss-placement token weight averages 1 (an unbiased reweighting).
  let sum = 0;
  let n = 0;
  for (const p of drawMaskPairs(11, new Uint8Array(500 * 8).fill(1), 500, 8, 4)) {
    for (const w of maskPairCoefficients(p, "loss").tokenWeight) {
      sum += w;
      n++;
    }
  }
  assert.ok(Math.abs(sum / n - 1) < 0.05, `mean token weight ${sum / n}`);
});

test("cart weighting: the same masks and t as 1/t, per-token CART weights with the response's clean tokens as context", () => {
  const B = 8;
  const T = 40;
  const resp = layout(4, B, T);
  const [inv] = drawMaskPairs(21, resp, B, T, 1);
  const [cart] = drawMaskPairs(21, resp, B, T, 1, { weighting: { kind: "cart", p: 0.1 } });
  assert.deepEqual(cart!.masks, inv!.masks);
  assert.deepEqual(cart!.t, inv!.t);
  assert.equal(inv!.cartWeights, undefined);
  // Pass k's context is the response tokens pass k leaves clean = the other pass's masked ones;
  // the prompt (and padding) never count (Dream-Coder's RL actor slices CART to the response).
  for (const k of [0, 1] as const) {
    const want = cartWeightsNaive(cart!.masks[k], cart!.masks[k === 0 ? 1 : 0], B, T, 0.1);
    for (let i = 0; i < B * T; i++) assert.ok(Math.abs(cart!.cartWeights![k][i]! - want[i]!) < 1e-12, `pass ${k} position ${i}`);
  }
  assert.throws(() => drawMaskPairs(21, resp, B, T, 1, { weighting: { kind: "cart", p: 1 } }), LossWeightError);
});

test("cart weighting: a hand-checked row, prompt excluded from the context", () => {
  // Row: 2 prompt tokens, then 4 response tokens. Use the seed's own masks and check one pass
  // against hand arithmetic on the response alone.
  const resp = Uint8Array.from([0, 0, 1, 1, 1, 1]);
  const [pair] = drawMaskPairs(3, resp, 1, 6, 1, { tMin: 0.2, tMax: 0.8, weighting: { kind: "cart", p: 0.5 } });
  const m = pair!.masks[0];
  const w = pair!.cartWeights![0];
  for (let n = 2; n < 6; n++) {
    let want = 0;
    if (m[n]) for (let i = 2; i < 6; i++) if (i !== n && !m[i]) want += 0.25 * 0.5 ** (Math.abs(n - i) - 1);
    assert.ok(Math.abs(w[n]! - want) < 1e-12, `position ${n}: ${w[n]} vs ${want} (mask ${Array.from(m).join("")})`);
  }
  assert.equal(w[0], 0);
  assert.equal(w[1], 0);
});

test("cart coefficients: weights rescaled to mean 1 per aggregation group, so the loss is Σ w·ℓ / Σ w", () => {
  const B = 6;
  const T = 30;
  const resp = layout(9, B, T);
  const [pair] = drawMaskPairs(8, resp, B, T, 1, { weighting: { kind: "cart", p: 0.1 } });
  const raw = new Float64Array(B * T);
  for (let i = 0; i < B * T; i++) raw[i] = pair!.masks[0][i] ? pair!.cartWeights![0][i]! : pair!.masks[1][i] ? pair!.cartWeights![1][i]! : 0;
  const valid = resp.reduce((a, x) => a + x, 0);
  const total = raw.reduce((a, x) => a + x, 0);
  // token-mean, weights in the loss: tokenWeight = w·N/Σw, coef 1; the 1/N factor then gives w/Σw.
  const inLoss = maskPairCoefficients(pair!, "loss", "token-mean");
  let sum = 0;
  for (let i = 0; i < B * T; i++) {
    assert.ok(Math.abs(inLoss.tokenWeight[i]! - (raw[i]! * valid) / total) < 1e-5, `position ${i}`);
    const k = pair!.masks[0][i] ? 0 : pair!.masks[1][i] ? 1 : -1;
    if (k >= 0) assert.equal(inLoss.logRatioCoef[k as 0 | 1][i], 1);
    sum += inLoss.tokenWeight[i]!;
  }
  assert.ok(Math.abs(sum / valid - 1) < 1e-5, `mean weight ${sum / valid}`);
  // Not 1/t in disguise: 1/t weights are constant per row and pass, CART ones vary.
  const [inv] = drawMaskPairs(8, resp, B, T, 1);
  assert.notDeepEqual(inLoss.tokenWeight, maskPairCoefficients(inv!, "loss", "token-mean").tokenWeight);
  // Weights in the ratio: coef = the same rescaled weight, token weight 1.
  const inRatio = maskPairCoefficients(pair!, "ratio", "token-mean");
  for (let i = 0; i < B * T; i++) {
    const k = pair!.masks[0][i] ? 0 : pair!.masks[1][i] ? 1 : -1;
    if (k < 0) continue;
    assert.ok(Math.abs(inRatio.logRatioCoef[k as 0 | 1][i]! - inLoss.tokenWeight[i]!) < 1e-6);
    assert.equal(inRatio.tokenWeight[i], 1);
  }
  // Sequence means: mean 1 within each row that has response tokens.
  const perRow = maskPairCoefficients(pair!, "loss", "seq-mean-token-mean");
  for (let b = 0; b < B; b++) {
    let s = 0;
    let n = 0;
    for (let j = b * T; j < (b + 1) * T; j++) {
      s += perRow.tokenWeight[j]!;
      n += resp[j]!;
    }
    if (n > 1) assert.ok(Math.abs(s / n - 1) < 1e-5, `row ${b}: mean ${s / n}`);
  }
});

test("cart coefficients: a group with no context at all weighs 0 instead of dividing by zero", () => {
  // One-token responses: the masked token has no clean response token beside it in either pass.
  const resp = Uint8Array.from([0, 1, 0, 0, 0, 1]);
  const [pair] = drawMaskPairs(1, resp, 2, 3, 1, { weighting: { kind: "cart", p: 0.1 } });
  for (const agg of ["token-mean", "seq-mean-token-mean"] as const) {
    const c = maskPairCoefficients(pair!, "loss", agg);
    assert.deepEqual(Array.from(c.tokenWeight), [0, 0, 0, 0, 0, 0]);
  }
});
