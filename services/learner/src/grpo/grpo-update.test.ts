import { test } from "node:test";
import assert from "node:assert/strict";
import { initJax } from "../model/jax-runtime.js";
import { nn, numpy as np, valueAndGrad, type Array as JaxArray } from "@jax-js/jax";
import { initAdamW } from "../optim/adamw.js";
import { cloneNamedTensors, type NamedTensors } from "../optim/named-tensors.js";
import { groupAdvantages } from "./group-advantages.js";
import { DEFAULT_GRPO_LOSS_CONFIG } from "./grpo-config.js";
import { runGrpoUpdate, type GrpoPolicy } from "./grpo-update.js";
import type { GrpoBatch } from "./grpo-batch.js";
import type { PolicyTokenBatch } from "./stacked-passes.js";

await initJax();

const V = 6;
const T = 5;
const MASK_ID = 0;
// Four samples of one prompt (position 0 = prompt token 5); responses use distinct tokens per position.
const responses = [
  [1, 2, 3, 4],
  [2, 3, 4, 1],
  [3, 4, 1, 2],
  [4, 1, 2, 3],
];
const B = responses.length;
const { advantages } = groupAdvantages([1, 0, 1, 0], [0, 0, 0, 0]);
const batch: GrpoBatch = {
  batchSize: B,
  seqLen: T,
  tokens: Int32Array.from(responses.flatMap((r) => [5, ...r])),
  attentionMask: new Uint8Array(B * T).fill(1),
  responseMask: Uint8Array.from(responses.flatMap(() => [0, 1, 1, 1, 1])),
  advantages,
};

/**
 * Toy policy with JaxPolicy's interface: a logits table [T, V] per position, log p(target) read
 * with a one-hot product. It ignores the input ids, which is enough to test the update's direction.
 */
const toyPolicy: GrpoPolicy = {
  async tokenLogProbs(weights, tb) {
    return logProbs(np.array(weights["table"]!.data, { shape: [T, V] }), tb).dataSync() as Float32Array;
  },
  async lossAndGrad(weights, tb, loss, extras) {
    const f = (p: { table: JaxArray }): [JaxArray, JaxArray] => {
      const lp = logProbs(p.table, tb);
      const ex: Record<string, JaxArray> = {};
      for (const [k, v] of Object.entries(extras)) ex[k] = np.array(v, { shape: [tb.batchSize, tb.seqLen] });
      return [loss(lp.ref, ex), lp];
    };
    const [[l, lp], g] = valueAndGrad(f, { hasAux: true })({ table: np.array(weights["table"]!.data, { shape: [T, V] }) });
    return {
      loss: l.item(),
      logProbs: lp.dataSync() as Float32Array,
      grads: { table: { shape: [T, V], data: Float32Array.from(g.table.dataSync()) } },
    };
  },
};

function logProbs(table: JaxArray, tb: PolicyTokenBatch): JaxArray {
  const oneHot = new Float32Array(tb.batchSize * tb.seqLen * V);
  tb.targets.forEach((tok, i) => (oneHot[i * V + tok] = 1));
  const logp = nn.logSoftmax(table, -1).reshape([1, tb.seqLen, V]);
  return logp.mul(np.array(oneHot, { shape: [tb.batchSize, tb.seqLen, V] })).sum(-1);
}

function sampleLogLik(weights: NamedTensors): number[] {
  const table = weights["table"]!.data;
  return responses.map((r) =>
    r.reduce((s, tok, k) => {
      const row = table.subarray((k + 1) * V, (k + 2) * V);
      return s + row[tok]! - Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
    }, 0),
  );
}

const initialWeights = (): NamedTensors => ({
  table: { shape: [T, V], data: Float32Array.from({ length: T * V }, (_, i) => 0.1 * Math.sin(i)) },
});

test("a GRPO update raises the likelihood of positive-advantage samples and lowers the others", async () => {
  const weights = initialWeights();
  const before = sampleLogLik(weights);
  const optimizer = initAdamW(weights);
  const result = await runGrpoUpdate({
    policy: toyPolicy,
    weights,
    optimizer,
    batch,
    maskId: MASK_ID,
    seed: 1,
    lrAt: () => 0.05,
    cfg: { ppoEpochs: 3, maskEpochs: 2 },
  });
  const after = sampleLogLik(weights);
  for (let b = 0; b < B; b++) {
    if (advantages[b]! > 0) assert.ok(after[b]! > before[b]! + 1e-3, `sample ${b}: ${before[b]} -> ${after[b]}`);
    else assert.ok(after[b]! < before[b]! - 1e-3, `sample ${b}: ${before[b]} -> ${after[b]}`);
  }
  assert.equal(result.epochs.length, 3);
  assert.equal(optimizer.step, 3);
  const first = result.epochs[0]!;
  assert.ok(Math.abs(first.ratioMean - 1) < 1e-5, "first epoch is on-policy: ratio 1");
  assert.equal(first.clipFraction, 0);
  assert.ok(first.gradNorm > 0 && first.applied);
  assert.ok(Math.abs(result.epochs[2]!.ratioMean - 1) > 1e-4, "later epochs are off-policy");
  assert.equal(result.maskSeeds.length, 2);
});

test("the cycle schedule uses one mask pair per epoch and also learns", async () => {
  const weights = initialWeights();
  const before = sampleLogLik(weights);
  const result = await runGrpoUpdate({
    policy: toyPolicy,
    weights,
    optimizer: initAdamW(weights),
    batch,
    maskId: MASK_ID,
    seed: 2,
    lrAt: () => 0.05,
    cfg: { ppoEpochs: 2, maskEpochs: 2, maskPairSchedule: "cycle", loss: { ...DEFAULT_GRPO_LOSS_CONFIG, maskWeightPlacement: "loss" } },
  });
  const after = sampleLogLik(weights);
  assert.ok(after[0]! > before[0]! && after[1]! < before[1]!);
  // Pair 1's old log-probs were taken before epoch 0 changed the weights, so epoch 1 is off-policy.
  assert.ok(Math.abs(result.epochs[1]!.ratioMean - 1) > 1e-4);
});

test("the update is deterministic given weights, optimizer state and seed", async () => {
  const run = async (): Promise<NamedTensors> => {
    const weights = initialWeights();
    await runGrpoUpdate({
      policy: toyPolicy,
      weights,
      optimizer: initAdamW(weights),
      batch,
      maskId: MASK_ID,
      seed: 9,
      lrAt: () => 0.01,
      cfg: { ppoEpochs: 2 },
    });
    return cloneNamedTensors(weights);
  };
  assert.deepEqual(await run(), await run());
});
