import { test } from "node:test";
import assert from "node:assert/strict";
import { cartWeights, cartWeightsNaive, DEFAULT_CART_P, LossWeightError, parseLossWeighting } from "./cart-weights.js";
import { createRng } from "./seeded-rng.js";

/** One row from a pattern: M = masked, C = clean context, . = neither (padding, or not counted). */
function row(pattern: string): { masked: Uint8Array; context: Uint8Array } {
  const masked = Uint8Array.from([...pattern].map((c) => (c === "M" ? 1 : 0)));
  const context = Uint8Array.from([...pattern].map((c) => (c === "C" ? 1 : 0)));
  return { masked, context };
}

function weightsOf(pattern: string, p: number): number[] {
  const { masked, context } = row(pattern);
  return [...cartWeights(masked, context, 1, pattern.length, p)];
}

function near(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i]! - expected[i]!) < 1e-12, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
}

test("hand values at p = 0.5: one neighbour on each side, two on one side, a masked run", () => {
  // C M C: ½·0.5·(0.5⁰ + 0.5⁰) = 0.5; unmasked positions weigh 0.
  near(weightsOf("CMC", 0.5), [0, 0.5, 0], "CMC");
  // C C M: ½·0.5·(0.5⁰ + 0.5¹) = 0.375.
  near(weightsOf("CCM", 0.5), [0, 0, 0.375], "CCM");
  // M M C: the first is 2 away from the context (0.25·0.5 = 0.125), the second 1 away (0.25);
  // the other masked token is not context.
  near(weightsOf("MMC", 0.5), [0.125, 0.25, 0], "MMC");
});

test("hand values at Dream-Coder's p = 0.1", () => {
  // C M M M C C; ½·p = 0.05:
  //   n=1: 0.9⁰ (i=0) + 0.9² (i=4) + 0.9³ (i=5) = 2.539 → 0.12695
  //   n=2: 0.9¹ + 0.9¹ + 0.9² = 2.61 → 0.1305
  //   n=3: 0.9² + 0.9⁰ + 0.9¹ = 2.71 → 0.1355
  near(weightsOf("CMMMCC", 0.1), [0, 0.12695, 0.1305, 0.1355, 0, 0], "CMMMCC");
  assert.equal(DEFAULT_CART_P, 0.1);
});

test("edges: all masked, no context at all, context that is not counted", () => {
  near(weightsOf("MMMM", 0.5), [0, 0, 0, 0], "all masked");
  near(weightsOf("M", 0.1), [0], "a single masked token");
  // "." positions are unmasked but not context (padding, or the prompt in the RL variant).
  near(weightsOf(".M.", 0.5), [0, 0, 0], "no unmasked context");
  near(weightsOf("..C.M", 0.5), [0, 0, 0, 0, 0.25 * 0.5], "context 2 away through a non-context gap");
  near(weightsOf("", 0.5), [], "empty row");
});

test("a masked token inside long clean context on both sides weighs 1 − (1 − p)^k", () => {
  const k = 200;
  const pattern = "C".repeat(k) + "M" + "C".repeat(k);
  const w = weightsOf(pattern, 0.1);
  assert.ok(Math.abs(w[k]! - (1 - 0.9 ** k)) < 1e-12, `w=${w[k]}`);
  // One-sided context gives at most ½.
  const oneSided = weightsOf("C".repeat(k) + "M", 0.1);
  assert.ok(Math.abs(oneSided[k]! - 0.5 * (1 - 0.9 ** k)) < 1e-12, `one-sided w=${oneSided[k]}`);
});

test("rows are independent: context in one row never reaches another", () => {
  // Row 0 "CC", row 1 "M." → row 1's masked token has no context.
  const w = cartWeights([0, 0, 1, 0], [1, 1, 0, 0], 2, 2, 0.5);
  near([...w], [0, 0, 0, 0], "two rows");
  const w2 = cartWeights([0, 1, 1, 0], [1, 0, 0, 1], 2, 2, 0.5);
  near([...w2], [0, 0.25, 0.25, 0], "C M | M C");
});

test("the two-sweep implementation equals the definition on random rows", () => {
  const rng = createRng(11);
  for (let trial = 0; trial < 20; trial++) {
    const B = 1 + rng.nextInt(4);
    const T = 1 + rng.nextInt(60);
    const masked = new Uint8Array(B * T);
    const context = new Uint8Array(B * T);
    for (let k = 0; k < B * T; k++) {
      const u = rng.nextFloat();
      if (u < 0.45) masked[k] = 1;
      else if (u < 0.9) context[k] = 1;
      // A few positions flagged as both: they count as masked only.
      if (rng.nextFloat() < 0.05) masked[k] = context[k] = 1;
    }
    const p = 0.02 + 0.96 * rng.nextFloat();
    const fast = cartWeights(masked, context, B, T, p);
    const slow = cartWeightsNaive(masked, context, B, T, p);
    for (let k = 0; k < B * T; k++) assert.ok(Math.abs(fast[k]! - slow[k]!) < 1e-12, `trial ${trial} k ${k}: ${fast[k]} vs ${slow[k]}`);
  }
});

test("bad p and bad shapes are errors naming what is wrong", () => {
  for (const p of [0, 1, -0.1, Number.NaN, 2])
    assert.throws(() => cartWeights([1], [0], 1, 1, p), (e: Error) => e instanceof LossWeightError && /cart_p must be in \(0, 1\)/.test(e.message));
  assert.throws(() => cartWeights([1, 0], [0], 1, 2, 0.1), /context has 1 entries, expected 1x2/);
  assert.throws(() => cartWeights([1], [0, 0], 1, 2, 0.1), /masked has 1 entries/);
});

test("parseLossWeighting: defaults, names, and errors naming the field", () => {
  const f = { lossWeight: "params.loss_weight", cartP: "params.cart_p" };
  assert.deepEqual(parseLossWeighting(undefined, undefined, f), { kind: "inv_t" });
  assert.deepEqual(parseLossWeighting("inv_t", null, f), { kind: "inv_t" });
  assert.deepEqual(parseLossWeighting("cart", undefined, f), { kind: "cart", p: 0.1 });
  assert.deepEqual(parseLossWeighting("cart", 0.3, f), { kind: "cart", p: 0.3 });
  // A cart default carries its p; an explicit inv_t overrides it.
  assert.deepEqual(parseLossWeighting(undefined, undefined, f, { kind: "cart", p: 0.2 }), { kind: "cart", p: 0.2 });
  assert.deepEqual(parseLossWeighting("inv_t", undefined, f, { kind: "cart", p: 0.2 }), { kind: "inv_t" });
  assert.throws(() => parseLossWeighting("linear", undefined, f), /^LossWeightError: params\.loss_weight must be one of inv_t, cart, got "linear"/);
  assert.throws(() => parseLossWeighting("cart", 1, f), /params\.cart_p must be in \(0, 1\), got 1/);
  assert.throws(() => parseLossWeighting("inv_t", 0.1, f), /params\.cart_p applies only to loss_weight cart/);
  assert.throws(() => parseLossWeighting("cart", -1, f), (e: unknown) => e instanceof LossWeightError && e.field === "cart_p");
  assert.throws(() => parseLossWeighting("x", undefined, f), (e: unknown) => e instanceof LossWeightError && e.field === "loss_weight");
});
