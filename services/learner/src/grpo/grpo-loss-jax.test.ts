import { test } from "node:test";
import assert from "node:assert/strict";
import { initJax } from "../model/jax-runtime.js";
import { grad, numpy as np, type Array as JaxArray } from "@jax-js/jax";
import { drawMaskPairs } from "./coupled-masks.js";
import { DEFAULT_GRPO_LOSS_CONFIG, type GrpoLossConfig, type LossAggregation, type MaskWeightPlacement } from "./grpo-config.js";
import { prepareGrpoLoss, type PassLogProbs } from "./grpo-loss-inputs.js";
import { grpoLogProbLoss } from "./grpo-loss-jax.js";
import { grpoLossReference, grpoStackedLossReference } from "./grpo-loss-reference.js";
import { createRng } from "./seeded-rng.js";
import type { GrpoBatch } from "./grpo-batch.js";
import { grpoLossExtras, stackMaskPasses } from "./stacked-passes.js";

await initJax();

const B = 4;
const T = 10;
const MASK_ID = 99;
const rng = createRng(2024);
const resp = new Uint8Array(B * T);
for (let b = 0; b < B; b++) for (let j = 2 + b; j < T - (b % 2); j++) resp[b * T + j] = 1;
const batch: GrpoBatch = {
  batchSize: B,
  seqLen: T,
  tokens: Int32Array.from({ length: B * T }, () => rng.nextInt(50)),
  attentionMask: new Uint8Array(B * T).fill(1),
  responseMask: resp,
  advantages: [1.1, -0.9, 0.4, -1.6],
};
const randLogProbs = (): Float32Array => Float32Array.from({ length: B * T }, () => -0.05 - 3 * rng.nextFloat());
const pairs = drawMaskPairs(77, resp, B, T, 2);
const old: PassLogProbs[] = pairs.map(() => [randLogProbs(), randLogProbs()]);
const ref: PassLogProbs[] = pairs.map(() => [randLogProbs(), randLogProbs()]);
// New log-probs near the old ones so both clipped and unclipped tokens occur.
const jitter = (a: Float32Array): Float32Array => a.map((x) => x + 0.6 * (rng.nextFloat() - 0.5));
const fresh: PassLogProbs[] = old.map(([a, b]) => [jitter(a), jitter(b)]);
/** Stacked rows are (pair, pass, sample): concatenating pass arrays in that order gives them. */
const stackedOf = (lp: PassLogProbs[]): Float32Array => Float32Array.from(lp.flatMap(([a, b]) => [...a, ...b]));

function variants(): GrpoLossConfig[] {
  const out: GrpoLossConfig[] = [];
  for (const aggregation of ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] as LossAggregation[]) {
    for (const maskWeightPlacement of ["ratio", "loss"] as MaskWeightPlacement[]) {
      out.push({ ...DEFAULT_GRPO_LOSS_CONFIG, aggregation, maskWeightPlacement });
    }
  }
  out.push({ ...DEFAULT_GRPO_LOSS_CONFIG, dualClipC: 1.5, klCoef: 0.05 });
  return out;
}

function setup(cfg: GrpoLossConfig) {
  const stacked = stackMaskPasses(batch, pairs, MASK_ID, cfg);
  const extras = grpoLossExtras(stacked, stackedOf(old), cfg, stackedOf(ref));
  return { stacked, extras };
}

test("stacked passes: each row masks its pass's positions with MASK and reads the clean tokens", () => {
  const { stacked } = setup(DEFAULT_GRPO_LOSS_CONFIG);
  assert.equal(stacked.tokens.batchSize, 2 * 2 * B);
  for (let row = 0; row < stacked.tokens.batchSize; row++) {
    const [p, k, b] = [Math.floor(row / (2 * B)), Math.floor(row / B) % 2, row % B];
    for (let j = 0; j < T; j++) {
      const masked = pairs[p]!.masks[k as 0 | 1][b * T + j] === 1;
      assert.equal(stacked.tokens.inputIds[row * T + j], masked ? MASK_ID : batch.tokens[b * T + j]);
      assert.equal(stacked.tokens.targets[row * T + j], batch.tokens[b * T + j]);
      assert.equal(stacked.coef[row * T + j] !== 0, masked);
    }
  }
});

test("stacked loss equals the per-pair reference, and the jax-js loss equals both, for every option", () => {
  for (const cfg of variants()) {
    const prep = prepareGrpoLoss(
      { batchSize: B, seqLen: T, responseMask: resp, advantages: batch.advantages, pairs, oldLogProbs: old, refLogProbs: ref },
      cfg,
    );
    const want = grpoLossReference(prep, fresh, cfg);
    const { extras } = setup(cfg);
    const stackedRef = grpoStackedLossReference(extras, stackedOf(fresh), cfg);
    const tag = JSON.stringify(cfg);
    assert.ok(
      Math.abs(stackedRef.loss - want.loss) <= 1e-5 * Math.max(1, Math.abs(want.loss)),
      `${tag}: stacked ${stackedRef.loss} vs ${want.loss}`,
    );
    assert.ok(Math.abs(stackedRef.stats.clipFraction - want.stats.clipFraction) < 1e-12, tag);
    const ex: Record<string, JaxArray> = {};
    for (const [k, v] of Object.entries(extras)) ex[k] = np.array(v, { shape: [4 * B, T] });
    const got = grpoLogProbLoss(cfg)(np.array(stackedOf(fresh), { shape: [4 * B, T] }), ex).item();
    assert.ok(Math.abs(got - want.loss) <= 1e-5 * Math.max(1, Math.abs(want.loss)), `${tag}: jax ${got} vs ref ${want.loss}`);
    assert.ok(want.stats.clipFraction > 0 && want.stats.clipFraction < 1, "data exercises clipping");
  }
});

test("jax-js gradient w.r.t. the log-probs matches finite differences of the reference", () => {
  const cfg: GrpoLossConfig = { ...DEFAULT_GRPO_LOSS_CONFIG, dualClipC: 1.5, klCoef: 0.05 };
  const { extras } = setup(cfg);
  const lp = stackedOf(fresh);
  const lossFn = grpoLogProbLoss(cfg);
  const f = (x: JaxArray): JaxArray => {
    const ex: Record<string, JaxArray> = {};
    for (const [k, v] of Object.entries(extras)) ex[k] = np.array(v, { shape: [4 * B, T] });
    return lossFn(x, ex);
  };
  const g = grad(f)(np.array(lp, { shape: [4 * B, T] })).dataSync();
  const base = grpoStackedLossReference(extras, lp, cfg);
  // Finite differences are meaningless across a kink of the clipped objective: skip tokens whose
  // log-ratio sits within 0.02 of one (a bump moves it by at most w·h ≤ 5e-3).
  const kinks = [Math.log(0.8), Math.log(1.28), Math.log(1.5)];
  const h = 1e-3;
  let checked = 0;
  for (let i = 0; i < lp.length; i++) {
    if (!extras["coef"]![i]) {
      assert.equal(g[i], 0, `unscored position ${i} has a gradient`);
      continue;
    }
    if (kinks.some((k) => Math.abs(base.logRatios[i]! - k) < 0.02)) continue;
    const bump = (d: number): number => {
      const x = Float32Array.from(lp);
      x[i] = x[i]! + d;
      return grpoStackedLossReference(extras, x, cfg).loss;
    };
    const fd = (bump(h) - bump(-h)) / (2 * h);
    assert.ok(Math.abs(fd - g[i]!) < 2e-3 + 2e-2 * Math.abs(fd), `position ${i}: fd ${fd} vs grad ${g[i]}`);
    checked++;
  }
  assert.ok(checked > 20, `only ${checked} positions checked`);
});
