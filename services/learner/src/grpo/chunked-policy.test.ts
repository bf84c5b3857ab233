import { test } from "node:test";
import assert from "node:assert/strict";
import { initJax } from "../model/jax-runtime.js";
import { buildPolicyGraph, CI_CONFIG, initWeights, serializeModel } from "@rlmesh/shared/model/index";
import { JaxPolicy } from "../model/jax-policy.js";
import { initAdamW } from "../optim/adamw.js";
import type { NamedTensors } from "../optim/named-tensors.js";
import { ChunkedPolicy, rowChunks } from "./chunked-policy.js";
import { drawMaskPairs } from "./coupled-masks.js";
import { buildGrpoBatch, type ScoredSample } from "./grpo-batch.js";
import { DEFAULT_GRPO_LOSS_CONFIG, GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";
import { grpoLogProbLoss } from "./grpo-loss-jax.js";
import { runGrpoUpdate } from "./grpo-update.js";
import { grpoLossExtras, stackMaskPasses } from "./stacked-passes.js";

await initJax();

const config = { ...CI_CONFIG, vocabSize: 24, maxSeqLen: 32 };
const MASK_ID = 23;
const policy = JaxPolicy.fromModelBytes(serializeModel(buildPolicyGraph(config, initWeights(config, 4))), {
  nLayers: config.nLayers,
  vocabSize: config.vocabSize,
});

// Three groups of two with unequal lengths, so sequence-mean and token-mean weigh rows differently.
const samples: ScoredSample[] = [
  { groupId: "a", promptIds: [1, 2, 3], responseIds: [4, 5, 6, 7], reward: 1 },
  { groupId: "a", promptIds: [1, 2, 3], responseIds: [8, 9], reward: 0 },
  { groupId: "b", promptIds: [12, 13], responseIds: [14, 15, 16, 4, 5], reward: 0 },
  { groupId: "b", promptIds: [12, 13], responseIds: [17, 18, 19], reward: 1 },
  { groupId: "c", promptIds: [20], responseIds: [21, 22, 4], reward: 1 },
  { groupId: "c", promptIds: [20], responseIds: [6, 7, 8, 9, 10, 11], reward: 0 },
];
const batch = buildGrpoBatch(samples, { padId: 0, seed: 1 }).batch!;

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-6;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
  }
  return d / scale;
}

test("rowChunks covers every row once, with equal-sized chunks padded at the end", () => {
  assert.deepEqual(rowChunks(12, 5), [
    { start: 0, rows: 5, padded: 0 },
    { start: 5, rows: 5, padded: 0 },
    { start: 10, rows: 2, padded: 3 },
  ]);
  assert.deepEqual(rowChunks(8, 8), [{ start: 0, rows: 8, padded: 0 }]);
  assert.throws(() => new ChunkedPolicy(policy, 0), GrpoConfigError);
});

for (const aggregation of ["token-mean", "seq-mean-token-mean"] as const) {
  test(`chunked forward/backward equals one pass: loss, log-probs and every gradient (${aggregation})`, async () => {
    const cfg: GrpoLossConfig = { ...DEFAULT_GRPO_LOSS_CONFIG, aggregation };
    const pairs = drawMaskPairs(7, batch.responseMask, batch.batchSize, batch.seqLen, 2);
    const stacked = stackMaskPasses(batch, pairs, MASK_ID, cfg);
    assert.equal(stacked.tokens.batchSize, 24, "2 pairs × 2 passes × 6 samples");
    const weights = policy.initialWeights();
    const whole = await policy.tokenLogProbs(weights, stacked.tokens);
    const chunked = new ChunkedPolicy(policy, 5); // 24 rows → 5 chunks, the last with one padding row
    assert.ok(maxRelDiff(await chunked.tokenLogProbs(weights, stacked.tokens), whole) < 1e-5);

    const extras = grpoLossExtras(stacked, whole, cfg);
    const lossFn = grpoLogProbLoss(cfg);
    const one = await policy.lossAndGrad(weights, stacked.tokens, lossFn, extras);
    const many = await chunked.lossAndGrad(weights, stacked.tokens, lossFn, extras);
    assert.ok(Number.isFinite(one.loss) && one.loss !== 0, `loss ${one.loss}`);
    assert.ok(Math.abs(many.loss - one.loss) < 1e-5 * Math.max(1, Math.abs(one.loss)), `${many.loss} vs ${one.loss}`);
    assert.ok(maxRelDiff(many.logProbs, one.logProbs) < 1e-5);
    let nonzero = 0;
    for (const [name, g] of Object.entries(one.grads)) {
      assert.ok(maxRelDiff(many.grads[name]!.data, g.data) < 1e-4, `${name}: ${maxRelDiff(many.grads[name]!.data, g.data)}`);
      if (g.data.some((x) => x !== 0)) nonzero++;
    }
    assert.ok(nonzero > Object.keys(one.grads).length / 2, "most weights get a gradient");
  });
}

test("a GRPO update run in row chunks lands on the same weights as one pass", async () => {
  const run = async (p: JaxPolicy | ChunkedPolicy): Promise<NamedTensors> => {
    const weights = policy.initialWeights();
    await runGrpoUpdate({ policy: p, weights, optimizer: initAdamW(weights), batch, maskId: MASK_ID, seed: 3, lrAt: () => 1e-3, cfg: { ppoEpochs: 2, maskEpochs: 2 } });
    return weights;
  };
  const a = await run(policy);
  const b = await run(new ChunkedPolicy(policy, 7));
  const start = policy.initialWeights();
  let moved = 0;
  let differ = 0;
  let total = 0;
  for (const name of Object.keys(a)) {
    const [wa, wb, w0] = [a[name]!.data, b[name]!.data, start[name]!.data];
    for (let i = 0; i < wa.length; i++, total++) {
      if (wa[i] !== w0[i]) moved++;
      const d = Math.abs(wa[i]! - wb[i]!);
      // Adam normalises each entry: a near-zero gradient whose last bits differ between the two
      // summation orders may flip its step's sign (at most 2 × LR × 2 epochs); nothing else may move.
      assert.ok(d <= 4.1e-3, `${name}[${i}] differs by ${d}`);
      if (d > 1e-6) differ++;
    }
  }
  assert.ok(moved > total / 2, `the update moved ${moved}/${total} weights`);
  assert.ok(differ <= total * 1e-3, `${differ}/${total} weights differ by more than 1e-6`);
});

test("split mode in row chunks: readMask travels with each chunk (padding rows read nowhere); same loss and gradients as the whole graph", async () => {
  const split = JaxPolicy.fromModelBytes(serializeModel(buildPolicyGraph(config, initWeights(config, 4))), {
    nLayers: config.nLayers,
    vocabSize: config.vocabSize,
    mode: "split",
  });
  try {
    assert.equal(split.mode, "split");
    const cfg: GrpoLossConfig = DEFAULT_GRPO_LOSS_CONFIG;
    const stacked = stackMaskPasses(batch, drawMaskPairs(7, batch.responseMask, batch.batchSize, batch.seqLen, 2), MASK_ID, cfg);
    const weights = policy.initialWeights();
    const whole = await policy.tokenLogProbs(weights, stacked.tokens);
    const extras = grpoLossExtras(stacked, whole, cfg);
    const lossFn = grpoLogProbLoss(cfg);
    const one = await policy.lossAndGrad(weights, stacked.tokens, lossFn, extras);
    const many = await new ChunkedPolicy(split, 5).lossAndGrad(weights, stacked.tokens, lossFn, extras);
    assert.ok(Math.abs(many.loss - one.loss) < 1e-5 * Math.max(1, Math.abs(one.loss)), `${many.loss} vs ${one.loss}`);
    const read = stacked.tokens.readMask!;
    for (let i = 0; i < read.length; i++) {
      if (read[i]) assert.ok(Math.abs(many.logProbs[i]! - one.logProbs[i]!) < 1e-5, `log-prob ${i}`);
      else assert.equal(many.logProbs[i], 0, "unread positions are not computed");
    }
    for (const [name, g] of Object.entries(one.grads))
      assert.ok(maxRelDiff(many.grads[name]!.data, g.data) < 1e-4, `${name}: ${maxRelDiff(many.grads[name]!.data, g.data)}`);
  } finally {
    split.dispose();
  }
});
