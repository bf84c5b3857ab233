import { test } from "node:test";
import assert from "node:assert/strict";
import type { MaskPair } from "./coupled-masks.js";
import { DEFAULT_GRPO_LOSS_CONFIG, GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";
import { prepareGrpoLoss } from "./grpo-loss-inputs.js";
import { grpoLossReference } from "./grpo-loss-reference.js";

const close = (a: number, b: number, tol = 1e-6): void => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

/** One sample: position 0 is prompt, 1 is masked in pass 1 (t = 0.25), 2 in pass 2. */
const pair: MaskPair = {
  batchSize: 1,
  seqLen: 3,
  seeds: new Uint32Array([0]),
  t: new Float64Array([0.25]),
  masks: [new Uint8Array([0, 1, 0]), new Uint8Array([0, 0, 1])],
  weights: [new Float64Array([4]), new Float64Array([4 / 3])],
};
const old: [Float32Array, Float32Array] = [new Float32Array([0, -1, 0]), new Float32Array([0, 0, -2])];
const fresh: [Float32Array, Float32Array] = [new Float32Array([0, -0.9, 0]), new Float32Array([0, 0, -2.05])];

function lossFor(cfg: GrpoLossConfig, advantage = 1) {
  const prep = prepareGrpoLoss(
    { batchSize: 1, seqLen: 3, responseMask: [0, 1, 1], advantages: [advantage], pairs: [pair], oldLogProbs: [old] },
    cfg,
  );
  return grpoLossReference(prep, [fresh], cfg);
}

test("weights inside the ratio: log-ratios 4*0.1 and (4/3)*(-0.05), token-mean", () => {
  const r = lossFor(DEFAULT_GRPO_LOSS_CONFIG);
  close(r.logRatios[0]![1]!, 0.4);
  close(r.logRatios[0]![2]!, -0.05 * (4 / 3));
  // token 1: ratio e^0.4 = 1.4918 > 1.28 -> -1.28 (clipped); token 2: ratio e^-0.0667 -> -0.935507
  close(r.loss, (-1.28 - Math.exp((-0.05 * 4) / 3)) / 2);
  close(r.stats.clipFraction, 0.5);
  close(r.stats.clipHighFraction, 0.5);
  assert.equal(r.stats.tokens, 2);
});

test("weights in the loss: raw log-ratios, per-token weights w/2", () => {
  const r = lossFor({ ...DEFAULT_GRPO_LOSS_CONFIG, maskWeightPlacement: "loss" });
  close(r.logRatios[0]![1]!, 0.1);
  close(r.loss, (-Math.exp(0.1) * 2 - Math.exp(-0.05) * (2 / 3)) / 2);
  close(r.stats.clipFraction, 0);
});

test("negative advantage and sequence aggregation", () => {
  const r = lossFor({ ...DEFAULT_GRPO_LOSS_CONFIG, aggregation: "seq-mean-token-sum" }, -1);
  // token 1: A=-1, r=1.4918 -> loss 1.4918 (not clipped); token 2: r=0.9355 -> max(0.9355, 0.9355)
  close(r.loss, Math.exp(0.4) + Math.exp((-0.05 * 4) / 3));
  close(r.stats.clipFraction, 0);
});

test("ratio is 1 and the loss is -mean(A) when new equals old", () => {
  const prep = prepareGrpoLoss(
    { batchSize: 1, seqLen: 3, responseMask: [0, 1, 1], advantages: [0.7], pairs: [pair], oldLogProbs: [old] },
    DEFAULT_GRPO_LOSS_CONFIG,
  );
  const r = grpoLossReference(prep, [old], DEFAULT_GRPO_LOSS_CONFIG);
  close(r.loss, -0.7);
  close(r.stats.ratioMean, 1);
  close(r.stats.approxKl, 0);
});

test("KL and entropy terms need their inputs", () => {
  assert.throws(
    () =>
      prepareGrpoLoss(
        { batchSize: 1, seqLen: 3, responseMask: [0, 1, 1], advantages: [1], pairs: [pair], oldLogProbs: [old] },
        { ...DEFAULT_GRPO_LOSS_CONFIG, klCoef: 0.1 },
      ),
    GrpoConfigError,
  );
  const cfg = { ...DEFAULT_GRPO_LOSS_CONFIG, entropyCoef: 0.1 };
  const prep = prepareGrpoLoss(
    { batchSize: 1, seqLen: 3, responseMask: [0, 1, 1], advantages: [1], pairs: [pair], oldLogProbs: [old] },
    cfg,
  );
  assert.throws(() => grpoLossReference(prep, [fresh], cfg), GrpoConfigError);
});
