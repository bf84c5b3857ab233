import { test } from "node:test";
import assert from "node:assert/strict";
import { initJax } from "../model/jax-runtime.js";
import { buildPolicyGraph, CI_CONFIG, initWeights, serializeModel } from "@rlmesh/shared/model/index";
import { JaxPolicy } from "../model/jax-policy.js";
import { initAdamW } from "../optim/adamw.js";
import type { NamedTensors } from "../optim/named-tensors.js";
import { buildGrpoBatch, type ScoredSample } from "./grpo-batch.js";
import { runGrpoUpdate } from "./grpo-update.js";
import { maskedInputIds } from "./coupled-masks.js";
import type { GrpoBatch } from "./grpo-batch.js";

await initJax();

/** The real policy path: the ONNX graph the rollout runs, differentiated by jax-js (CI-size model). */
const config = { ...CI_CONFIG, vocabSize: 24, maxSeqLen: 32 };
const MASK_ID = 23;
const policy = JaxPolicy.fromModelBytes(serializeModel(buildPolicyGraph(config, initWeights(config, 3))), {
  nLayers: config.nLayers,
  vocabSize: config.vocabSize,
});

const samples: ScoredSample[] = [
  { groupId: "a", promptIds: [1, 2, 3], responseIds: [4, 5, 6, 7], reward: 1 },
  { groupId: "a", promptIds: [1, 2, 3], responseIds: [8, 9, 10, 11], reward: 0 },
  { groupId: "b", promptIds: [12, 13], responseIds: [14, 15, 16], reward: 0 },
  { groupId: "b", promptIds: [12, 13], responseIds: [17, 18, 19], reward: 1 },
];

/** Sum of log p(response) with the whole response masked (the one-step diffusion likelihood). */
async function responseLogLik(weights: NamedTensors, batch: GrpoBatch): Promise<number[]> {
  const { batchSize: B, seqLen: T } = batch;
  const lp = await policy.tokenLogProbs(weights, {
    batchSize: B,
    seqLen: T,
    inputIds: maskedInputIds(batch.tokens, batch.responseMask, MASK_ID),
    positionIds: Int32Array.from({ length: B * T }, (_, i) => i % T),
    attentionMask: Float32Array.from(batch.attentionMask),
    targets: batch.tokens,
  });
  return Array.from({ length: B }, (_, b) => {
    let s = 0;
    for (let j = b * T; j < (b + 1) * T; j++) if (batch.responseMask[j]) s += lp[j]!;
    return s;
  });
}

test("GRPO steps on the ONNX policy raise the likelihood of rewarded responses and lower the others", async () => {
  const built = buildGrpoBatch(samples, { padId: 0, seed: 1 });
  const batch = built.batch!;
  const weights = policy.initialWeights();
  const before = await responseLogLik(weights, batch);
  const optimizer = initAdamW(weights);
  const result = await runGrpoUpdate({
    policy,
    weights,
    optimizer,
    batch,
    maskId: MASK_ID,
    seed: 5,
    lrAt: () => 3e-3,
    cfg: { ppoEpochs: 4, maskEpochs: 2 },
  });
  const after = await responseLogLik(weights, batch);
  for (let b = 0; b < batch.batchSize; b++) {
    const adv = Number(batch.advantages[b]);
    const msg = `row ${b} (A=${adv.toFixed(2)}): ${before[b]!.toFixed(3)} -> ${after[b]!.toFixed(3)}`;
    if (adv > 0) assert.ok(after[b]! > before[b]!, msg);
    else assert.ok(after[b]! < before[b]!, msg);
  }
  assert.ok(result.epochs.every((e) => e.applied && Number.isFinite(e.loss)));
  assert.ok(Math.abs(result.epochs[0]!.ratioMean - 1) < 1e-4, "first epoch on-policy");
});

test("the same weights, optimizer state, batch and seed give bit-identical updates (resume after a crash)", async () => {
  const batch = buildGrpoBatch(samples, { padId: 0, seed: 1 }).batch!;
  const once = async (): Promise<NamedTensors> => {
    const weights = policy.initialWeights();
    await runGrpoUpdate({
      policy,
      weights,
      optimizer: initAdamW(weights),
      batch,
      maskId: MASK_ID,
      seed: 11,
      lrAt: () => 1e-3,
      cfg: { ppoEpochs: 2 },
    });
    return weights;
  };
  const [a, b] = [await once(), await once()];
  for (const name of Object.keys(a)) assert.deepEqual(a[name]!.data, b[name]!.data, name);
});
