import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import * as grpc from "@grpc/grpc-js";
import { createLogger, GrpcError, InvalidArgumentError, weightsChecksum, type GrpoParams, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";
import { loadModel } from "@rlmesh/shared/model/index";

import { initJax } from "../model/jax-runtime.js";
import { JaxPolicy } from "../model/jax-policy.js";
import { GrpoTrainer, type GrpoTrainerOptions } from "./grpo-trainer.js";
import { resolveGrpoParams } from "./learner-recipe.js";
import { buildGrpoBatch } from "../grpo/grpo-batch.js";
import { drawMaskPairs } from "../grpo/coupled-masks.js";
import { stackMaskPasses } from "../grpo/stacked-passes.js";
import { maskedLogLik } from "../testing/masked-log-lik.js";
import { LearnerMetrics } from "../learner-metrics.js";
import { writeRandomModelDir } from "../testing/random-model-dir.js";
import type { NamedTensors } from "../optim/named-tensors.js";

await initJax();
const root = await mkdtemp(join(tmpdir(), "rlmesh-trainer-test-"));
after(() => rm(root, { recursive: true, force: true }));
const modelDir = await writeRandomModelDir(join(root, "model"), "ci", 7, 64);
const model = await loadModel(modelDir);
const EOS = model.manifest.eos_id;
const PAD = model.manifest.pad_id;
const MASK = model.manifest.mask_id;
const logger = createLogger("learner-test", { level: "error" });
let dirs = 0;

async function open(extra: Partial<GrpoTrainerOptions> = {}): Promise<GrpoTrainer> {
  return GrpoTrainer.open({ modelDir, checkpointDir: join(root, `ckpt-${dirs++}`), logger, ...extra });
}

/** Fast-learning params for tests: no warmup, a large LR, two optimizer steps on the batch. */
const FAST: GrpoParams = { lr: 3e-3, warmupSteps: 0, ppoEpochs: 2 };

function sample(promptId: string, prompt: number[], response: number[], reward: number, policyVersion = 0): TrainSample {
  return { promptId, promptTokenIds: prompt, responseTokenIds: response, reward, policyVersion, policyJobId: "job-1", suffixTokenIds: [] };
}

/** Two groups of two: in each, one rewarded and one unrewarded response (then PAD after EOS). */
function batch(version = 0, rewards: [number, number, number, number] = [1, 0, 0, 1]): TrainSample[] {
  return [
    sample("p1", [10, 11, 12], [20, 21, 22, EOS, PAD, PAD], rewards[0], version),
    sample("p1", [10, 11, 12], [30, 31, EOS, PAD, PAD, PAD], rewards[1], version),
    sample("p2", [13, 14], [40, 41, 42, 43, EOS], rewards[2], version),
    sample("p2", [13, 14], [50, 51, EOS], rewards[3], version),
  ];
}

/** A TrainStep of `jobId`; samples left on the default job "job-1" are moved to it. */
function request(step: number, samples: TrainSample[], params: GrpoParams | null = FAST, jobId = "job-1"): TrainStepRequest {
  return { jobId, step, samples: samples.map((s) => (s.policyJobId === "job-1" ? { ...s, policyJobId: jobId } : s)), params, seed: 0 };
}

function named(t: GrpoTrainer): NamedTensors {
  const out: NamedTensors = {};
  for (const h of t.weights().tensors) out[h.name] = { shape: h.shape, data: h.data as Float32Array };
  return out;
}

const scorer = JaxPolicy.fromModelBytes(model.modelBytes, { nLayers: model.manifest.n_layers, vocabSize: model.manifest.vocab_size });

/** log p(response up to EOS | prompt) with the whole response masked, per sample. */
async function responseLogLik(weights: NamedTensors, samples: TrainSample[]): Promise<number[]> {
  const rows = samples.map((s) => {
    const resp = s.responseTokenIds.slice(0, s.responseTokenIds.indexOf(EOS) + 1);
    return { ids: [...s.promptTokenIds, ...resp], scored: (j: number) => j >= s.promptTokenIds.length };
  });
  return maskedLogLik(scorer, weights, rows, { mask: MASK, pad: PAD });
}

test("a TrainStep raises the likelihood of positive-advantage samples and lowers the others", async () => {
  const t = await open();
  const samples = batch();
  const before = await responseLogLik(named(t), samples);
  const res = await t.trainStep(request(0, samples));
  assert.equal(res.policyVersion, 1);
  assert.equal(res.stats.skipped, false);
  assert.equal(res.stats.numSamples, 4);
  assert.equal(res.stats.rewardMean, 0.5);
  assert.ok(Number.isFinite(res.stats.loss) && Number(res.stats.gradNorm) > 0, JSON.stringify(res.stats));
  assert.equal(res.stats.lr, 3e-3);
  const afterLl = await responseLogLik(named(t), samples);
  const gain = samples.map((_, i) => afterLl[i]! - before[i]!);
  const msg = samples.map((s, i) => `sample ${i} reward ${s.reward}: ${before[i]!.toFixed(4)} -> ${afterLl[i]!.toFixed(4)}`).join("; ");
  samples.forEach((s, i) => {
    if (s.reward === 1) assert.ok(gain[i]! > 0, msg);
  });
  // Within each group the rewarded response gains clearly more than the unrewarded one (which
  // shares prompt, EOS and position statistics with it, so it may move either way a little).
  assert.ok(gain[0]! - gain[1]! > 0.05 && gain[3]! - gain[2]! > 0.05, msg);
  assert.equal(t.status().policyVersion, 1);
  assert.equal(t.status().step, 1);
  t.dispose();
});

test("stale and future samples are rejected naming the field and the reason", async () => {
  const t = await open({ maxStaleness: 1 });
  await t.trainStep(request(0, batch(0)));
  await t.trainStep(request(1, batch(1)));
  assert.equal(t.status().policyVersion, 2);
  const stale = batch(1);
  stale[2] = { ...stale[2]!, policyVersion: 0 };
  const check = (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.field, "samples[2].policy_version");
    assert.match(err.message, /stale: generated by version 0, the learner is at version 2 and accepts at most 1 version/);
    return true;
  };
  assert.throws(() => t.validate(request(2, stale)), check);
  await assert.rejects(t.trainStep(request(2, stale)), check);
  const future = batch(1);
  future[0] = { ...future[0]!, policyVersion: 5 };
  assert.throws(() => t.validate(request(2, future)), /samples\[0\]\.policy_version: version 5 is newer than the learner's version 2/);
  // One version behind is accepted (overlap mode) and trains.
  const res = await t.trainStep(request(2, batch(1)));
  assert.equal(res.policyVersion, 3);
  t.dispose();
});

test("malformed requests are rejected with the offending field", async () => {
  const t = await open();
  const cases: [TrainSample[], GrpoParams | null, RegExp][] = [
    [[], null, /^samples: is empty/],
    [[{ ...batch()[0]!, reward: 1.5 }, ...batch().slice(1)], null, /^samples\[0\]\.reward: must be in \[0, 1\]/],
    [[batch()[0]!, { ...batch()[1]!, responseTokenIds: [20, 9999] }], null, /^samples\[1\]\.response_token_ids\[1\]: token id 9999 is outside the vocabulary/],
    [[batch()[0]!, { ...batch()[1]!, responseTokenIds: [20, MASK, EOS] }], null, /^samples\[1\]\.response_token_ids\[1\]: is the MASK token/],
    [[batch()[0]!, { ...batch()[1]!, promptTokenIds: [10, 11] }], null, /^samples\[1\]\.prompt_token_ids: differ from samples\[0\]/],
    [[batch()[0]!, { ...batch()[1]!, responseTokenIds: Array(70).fill(20) }], null, /max_seq_len is 64/],
    [batch(), { klCoef: 0.1 }, /^params\.kl_coef: must be 0/],
    [batch(), { clipLow: 1.5 }, /^params\.clip_low: must be in \[0, 1\)/],
    [batch(), { lossAgg: "sum" }, /^params\.loss_agg: must be one of/],
    // Versions are scoped by job: a sample of another job's policy is never trained on.
    [[batch()[0]!, { ...batch()[1]!, policyJobId: "job-0" }], null, /^samples\[1\]\.policy_job_id: sample was generated by job job-0's policy; this TrainStep trains job job-1/],
    [[{ ...batch()[0]!, policyJobId: "" }], null, /^samples\[0\]\.policy_job_id: is required/],
  ];
  const rejects = (req: TrainStepRequest, re: RegExp) =>
    assert.throws(() => t.validate(req), (err: unknown) => err instanceof InvalidArgumentError && re.test(err.message), String(re));
  for (const [samples, params, re] of cases) rejects(request(0, samples, params), re);
  rejects({ ...request(0, batch()), jobId: "" }, /^job_id: is required/);
  assert.equal(t.status().policyVersion, 0);
  t.dispose();
});

test("an empty generation is a legal sample: reward 0, counted in its group, no loss tokens", async () => {
  const t = await open();
  const samples = batch();
  samples[1] = { ...samples[1]!, responseTokenIds: [], reward: 0 };
  t.validate(request(0, samples));
  const res = await t.trainStep(request(0, samples));
  assert.equal(res.policyVersion, 1);
  assert.ok(Number.isFinite(res.stats.loss), JSON.stringify(res.stats));
  t.dispose();
});

test("a repeated TrainStep for an applied (job, step) returns the recorded result without training", async () => {
  const t = await open();
  const first = await t.trainStep(request(0, batch()));
  const sum = weightsChecksum(t.weights().tensors);
  const again = await t.trainStep(request(0, batch()));
  assert.equal(again.replayed, true);
  assert.equal(again.stats.replayed, true);
  assert.equal(again.policyVersion, first.policyVersion);
  assert.equal(again.stats.loss, first.stats.loss);
  assert.equal(weightsChecksum(t.weights().tensors), sum);
  assert.equal(t.status().step, 1);
  // Replays pass validation even when the samples have become stale meanwhile.
  await t.trainStep(request(1, batch(1)));
  await t.trainStep(request(2, batch(2)));
  assert.doesNotThrow(() => t.validate(request(0, batch())));
  assert.equal((await t.trainStep(request(0, batch()))).policyVersion, 1);
  // The same (job, step) with other inputs is a caller bug, not a retry.
  await assert.rejects(t.trainStep(request(1, batch(1, [0, 1, 1, 0]))), (err: unknown) => {
    assert.ok(err instanceof GrpcError);
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.match(err.message, /already applied with different/);
    return true;
  });
  // Another job's step 0 is a new step.
  assert.equal((await t.trainStep(request(0, batch(3), FAST, "job-2"))).policyVersion, 4);
  t.dispose();
});

test("a batch without an informative sample is skipped: no update, version unchanged, counted", async () => {
  const t = await open();
  const sum = weightsChecksum(t.weights().tensors);
  const res = await t.trainStep(request(0, batch(0, [1, 1, 0, 0])));
  assert.equal(res.stats.skipped, true);
  assert.equal(res.policyVersion, 0);
  assert.equal(weightsChecksum(t.weights().tensors), sum);
  assert.equal(t.status().skippedBatches, 1);
  t.dispose();
});

test("a learner reopened from its checkpoint makes the same next update as one that never stopped", async () => {
  const dirA = join(root, "resume-a");
  const dirB = join(root, "resume-b");
  const a = await GrpoTrainer.open({ modelDir, checkpointDir: dirA, logger });
  await a.trainStep(request(0, batch(0)));
  const ra = await a.trainStep(request(1, batch(1, [0, 1, 1, 0])));
  const b1 = await GrpoTrainer.open({ modelDir, checkpointDir: dirB, logger });
  await b1.trainStep(request(0, batch(0)));
  b1.dispose();
  const b2 = await GrpoTrainer.open({ modelDir, checkpointDir: dirB, logger });
  assert.equal(b2.status().policyVersion, 1);
  const rb = await b2.trainStep(request(1, batch(1, [0, 1, 1, 0])));
  assert.equal(weightsChecksum(b2.weights().tensors), weightsChecksum(a.weights().tensors));
  assert.deepEqual({ ...rb.stats, seconds: 0 }, { ...ra.stats, seconds: 0 });
  a.dispose();
  b2.dispose();
});

test("the collapse guard rolls back to the last good checkpoint, lowers the LR and says so", async () => {
  const registry = new Registry();
  const metrics = new LearnerMetrics(registry);
  // keepCheckpoints 2: the rollback target must survive pruning (it is not among the newest two).
  const t = await open({ guard: { minBaselineSteps: 2, rewardPatience: 2, rewardWindow: 4, rewardSmoothing: 1 }, metrics, keepCheckpoints: 2 });
  const params = { lr: 1e-3, warmupSteps: 0 } as GrpoParams;
  // Checkpoint k holds the weights after k steps; those after step 1 (checkpoint 2) generated
  // step 2's healthy samples, those after step 2 (checkpoint 3) step 3's collapsed ones.
  let goodSum = "";
  for (let s = 0; s < 3; s++) {
    await t.trainStep(request(s, batch(t.status().policyVersion), params));
    if (s === 1) goodSum = weightsChecksum(t.weights().tensors);
  }
  // Reward falls to 0 (a collapse): the first bad step is only counted; the second triggers.
  const bad1 = await t.trainStep(request(3, batch(t.status().policyVersion, [0, 0, 0, 0]), params));
  assert.equal(bad1.stats.guardAction, "");
  assert.notEqual(weightsChecksum(t.weights().tensors), goodSum);
  const versionBefore = t.status().policyVersion;
  const bad2 = await t.trainStep(request(4, batch(versionBefore, [0, 0, 0, 0]), params));
  assert.equal(bad2.stats.guardAction, "rollback");
  assert.match(String(bad2.stats.guardReason), /step reward 0\.000 vs baseline 0\.500 for 2 steps since step 3; roll back to step 2, LR x0\.5/);
  assert.equal(bad2.policyVersion, versionBefore + 1, "the restored weights are published as a new version");
  assert.equal(weightsChecksum(t.weights().tensors), goodSum, "weights of the last good checkpoint");
  assert.equal(bad2.stats.lr, 0.5e-3);
  const next = await t.trainStep(request(5, batch(t.status().policyVersion), params));
  assert.equal(next.stats.lr, 0.5e-3, "later steps run at the lowered LR");
  const text = await registry.metrics();
  assert.match(text, /rlmesh_learner_rollbacks_total\{trigger="step_reward"\} 1/);
  t.dispose();
});

test("a sharp drop of the reported held-out pass@1 rolls back to the checkpoint before it and lowers the LR", async () => {
  const registry = new Registry();
  const metrics = new LearnerMetrics(registry);
  const t = await open({ guard: { passDrop: 0.05, passPatience: 1 }, metrics, keepCheckpoints: 1 });
  const params = { lr: 1e-3, warmupSteps: 0 } as GrpoParams;
  assert.equal((await t.reportEval({ jobId: "j", step: 0, passAt1: 0.4, n: 100 })).guardAction, "");
  await t.trainStep(request(0, batch(t.status().policyVersion), params));
  const goodSum = weightsChecksum(t.weights().tensors);
  assert.equal((await t.reportEval({ jobId: "j", step: 1, passAt1: 0.42, n: 100 })).guardAction, "", "a rise is healthy");
  await t.trainStep(request(1, batch(t.status().policyVersion), params));
  assert.notEqual(weightsChecksum(t.weights().tensors), goodSum);
  const versionBefore = t.status().policyVersion;
  const r = await t.reportEval({ jobId: "j", step: 2, passAt1: 0.2, n: 100 });
  assert.equal(r.guardAction, "rollback");
  assert.match(r.guardReason, /held-out pass@1 0\.200 vs best 0\.420 at step 2; roll back to step 1, LR x0\.5/);
  assert.equal(r.policyVersion, versionBefore + 1, "the restored weights are published as a new version");
  assert.equal(weightsChecksum(t.weights().tensors), goodSum, "weights of the checkpoint before the drop");
  const next = await t.trainStep(request(2, batch(t.status().policyVersion), params));
  assert.equal(next.stats.lr, 0.5e-3, "later steps run at the lowered LR");
  assert.match(await registry.metrics(), /rlmesh_learner_rollbacks_total\{trigger="heldout_pass_at_1"\} 1/);
  await assert.rejects(t.reportEval({ jobId: "j", step: 3, passAt1: 1.5, n: 1 }), /pass_at1: must be a fraction in \[0, 1\], got 1\.5/);
  t.dispose();
});

after(() => scorer.dispose());

test("padding a batch to its length bucket leaves the update unchanged", async () => {
  const { buildGrpoBatch } = await import("../grpo/grpo-batch.js");
  const { runGrpoUpdate } = await import("../grpo/grpo-update.js");
  const { initAdamW } = await import("../optim/adamw.js");
  const { padBatchToBucket } = await import("./batch-bucket.js");
  const scored = batch().map((s) => ({
    groupId: s.promptId,
    promptIds: s.promptTokenIds,
    responseIds: s.responseTokenIds.slice(0, s.responseTokenIds.indexOf(EOS) + 1),
    reward: s.reward,
  }));
  const raw = buildGrpoBatch(scored, { padId: PAD, seed: 3 }).batch!;
  const padded = padBatchToBucket(raw, PAD, 64, 16);
  assert.ok(padded.seqLen > raw.seqLen);
  const run = async (b: typeof raw) => {
    const weights = scorer.initialWeights();
    const r = await runGrpoUpdate({ policy: scorer, weights, optimizer: initAdamW(weights), batch: b, maskId: MASK, seed: 9, lrAt: () => 1e-3 });
    return { weights, loss: r.epochs[0]!.loss };
  };
  const [a, b] = [await run(raw), await run(padded)];
  assert.ok(Math.abs(a.loss - b.loss) < 1e-5, `${a.loss} vs ${b.loss}`);
  // Float summation order differs with the longer rows (and with jax-js's thread split under
  // load). Adam's first step is ≈ lr·sign(g), so a near-zero gradient whose sign flips on that
  // noise moves by up to 2·lr; everything else must agree to 1e-5. Allow the flips on at most
  // 0.1 % of the entries, and never more than 2·lr.
  let total = 0;
  let off = 0;
  for (const name of Object.keys(a.weights)) {
    const x = a.weights[name]!.data;
    const y = b.weights[name]!.data;
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(x[i]! - y[i]!);
      assert.ok(d <= 2e-3 + 1e-6, `${name}[${i}]: diff ${d} exceeds Adam's 2·lr bound`);
      if (d >= 1e-5) off++;
    }
    total += x.length;
  }
  assert.ok(off <= total * 1e-3, `${off} of ${total} entries differ by more than 1e-5`);
});

test("one-version-stale samples take their old log-probs from the previous version's weights", async () => {
  const run = async (versions: number[]) => {
    const t = await open();
    await t.trainStep(request(0, batch(0)));
    const samples = batch(1, [0, 1, 1, 0]).map((s, i) => ({ ...s, policyVersion: versions[i]! }));
    const r = await t.trainStep(request(1, samples, { lr: 3e-3, warmupSteps: 0, ppoEpochs: 1 }));
    t.dispose();
    return r.stats;
  };
  const onPolicy = await run([1, 1, 1, 1]);
  const stale = await run([0, 0, 0, 0]);
  const mixed = await run([0, 1, 0, 1]);
  // On-policy, the first epoch's ratio is exactly 1: nothing is clipped.
  assert.equal(onPolicy.clipFraction, 0);
  // Stale samples see the ratio new/old between versions 1 and 0, so the loss differs.
  assert.notEqual(stale.loss, onPolicy.loss);
  assert.notEqual(mixed.loss, onPolicy.loss);
  assert.notEqual(mixed.loss, stale.loss);
  for (const s of [onPolicy, stale, mixed]) assert.ok(Number.isFinite(s.loss), JSON.stringify(s));
});

test("a checkpoint directory whose checkpoints are all corrupt stops the start-up instead of starting over", async () => {
  const { writeFile } = await import("node:fs/promises");
  const dir = join(root, "corrupt");
  const t = await GrpoTrainer.open({ modelDir, checkpointDir: dir, logger });
  t.dispose();
  await writeFile(join(dir, "ckpt-000000000000", "tensors.bin"), "garbage");
  await assert.rejects(GrpoTrainer.open({ modelDir, checkpointDir: dir, logger }), /has checkpoint directories \(steps 0\) but none is valid/);
});

test("a checkpoint made from another model is refused with a clear message", async () => {
  const dir = join(root, "other-model");
  const other = await writeRandomModelDir(join(root, "model-2"), "ci", 8, 64);
  (await GrpoTrainer.open({ modelDir: other, checkpointDir: dir, logger })).dispose();
  await assert.rejects(GrpoTrainer.open({ modelDir, checkpointDir: dir, logger }), /was trained from a different model\.onnx/);
});

test("a TrainStep with loss_weight cart scores the same masks with CART's per-token weights, and still trains", async () => {
  const samples = batch();
  const cartParams: GrpoParams = { ...FAST, lossWeight: "cart", cartP: 0.1 };
  // The per-token loss factors the update uses, from the same resolution path as the trainer.
  const built = buildGrpoBatch(
    samples.map((s) => ({ groupId: s.promptId, promptIds: s.promptTokenIds, responseIds: s.responseTokenIds, reward: s.reward })),
    { padId: PAD, seed: 0 },
  ).batch!;
  const stacked = (params: GrpoParams) => {
    const r = resolveGrpoParams(params);
    const pairs = drawMaskPairs(5, built.responseMask, built.batchSize, built.seqLen, r.update.maskEpochs, r.update.mask);
    return stackMaskPasses(built, pairs, MASK, r.update.loss);
  };
  const inv = stacked(FAST);
  const cart = stacked(cartParams);
  assert.deepEqual(cart.tokens.inputIds, inv.tokens.inputIds, "same masked inputs");
  assert.notDeepEqual(cart.factor, inv.factor, "different per-token weights");
  const total = (f: Float32Array) => f.reduce((a, x) => a + x, 0);
  // Both are means over the response tokens: 1/t's factors average 1 only in expectation, CART's are exactly 1.
  assert.ok(Math.abs(total(cart.factor) - 1) < 1e-5, `CART factors sum to ${total(cart.factor)}`);

  const a = await open();
  const b = await open();
  const before = await responseLogLik(named(a), samples);
  const resInv = await a.trainStep(request(0, samples, FAST));
  const resCart = await b.trainStep(request(0, samples, cartParams));
  assert.equal(resCart.policyVersion, 1);
  assert.equal(resCart.stats.skipped, false);
  assert.ok(Number.isFinite(resCart.stats.loss) && Number(resCart.stats.gradNorm) > 0, JSON.stringify(resCart.stats));
  assert.notEqual(resCart.stats.gradNorm, resInv.stats.gradNorm, "CART and 1/t give different gradients");
  const afterLl = await responseLogLik(named(b), samples);
  const gain = samples.map((_, i) => afterLl[i]! - before[i]!);
  const msg = samples.map((s, i) => `sample ${i} reward ${s.reward}: ${before[i]!.toFixed(4)} -> ${afterLl[i]!.toFixed(4)}`).join("; ");
  // The probe scores the response fully masked, the one regime CART weighs least (no clean
  // context), so a single rewarded sample may not rise there; the rewarded ones rise on average
  // and each clearly gains over its group's unrewarded one.
  assert.ok(gain[0]! + gain[3]! > 0, msg);
  assert.ok(gain[0]! - gain[1]! > 0.05 && gain[3]! - gain[2]! > 0.05, msg);
  a.dispose();
  b.dispose();
});

test("a TrainStep with a bad loss_weight or cart_p is INVALID_ARGUMENT naming the field", async () => {
  const t = await open();
  for (const [params, re] of [
    [{ ...FAST, lossWeight: "linear" }, /params\.loss_weight: must be one of inv_t, cart/],
    [{ ...FAST, lossWeight: "cart", cartP: 1.5 }, /params\.cart_p: must be in \(0, 1\)/],
  ] as [GrpoParams, RegExp][]) {
    await assert.rejects(t.trainStep(request(0, batch(), params)), (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message));
  }
  assert.equal(t.status().policyVersion, 0);
  t.dispose();
});

test("ema_decay keeps a moving average of the weights; FinalizeWeights installs it as a new version (checkpointed, idempotent), after which TrainSteps are refused", async () => {
  const EMA: GrpoParams = { ...FAST, emaDecay: 0.5 };
  const a = await GrpoTrainer.open({ modelDir, checkpointDir: join(root, "ema-a"), logger });
  const w0 = named(a);
  await a.trainStep(request(0, batch(0), EMA));
  const w1 = named(a);
  await a.trainStep(request(1, batch(1, [0, 1, 1, 0]), EMA));
  const w2 = named(a);
  const v2 = a.status().policyVersion;
  assert.equal(v2, 2);
  const check = await a.finalizeWeights(true);
  assert.deepEqual(check, { policyVersion: 2, averaged: true, alreadyFinal: false, averagedUpdates: 2, emaDecay: 0.5 });
  assert.equal(weightsChecksum(a.weights().tensors), weightsChecksum(toHostList(w2)), "check_only changes nothing");
  const done = await a.finalizeWeights();
  assert.deepEqual(done, { policyVersion: 3, averaged: true, alreadyFinal: false, averagedUpdates: 2, emaDecay: 0.5 });
  // avg = 0.5·(0.5·w0 + 0.5·w1) + 0.5·w2
  const got = named(a);
  let maxErr = 0;
  let moved = 0;
  for (const [k, t] of Object.entries(got)) {
    if (!w0[k] || w0[k].data === w2[k]!.data) continue;
    for (let i = 0; i < t.data.length; i++) {
      const want = 0.25 * w0[k].data[i]! + 0.25 * w1[k]!.data[i]! + 0.5 * w2[k]!.data[i]!;
      maxErr = Math.max(maxErr, Math.abs(t.data[i]! - want));
      if (w2[k]!.data[i] !== w0[k].data[i]) moved++;
    }
  }
  assert.ok(moved > 0, "the updates moved some weights");
  assert.ok(maxErr < 1e-6, `average off by ${maxErr}`);
  assert.deepEqual(await a.finalizeWeights(), { ...done, alreadyFinal: true });
  await assert.rejects(a.trainStep(request(2, batch(2), EMA)), /final weights are installed/);
  // The guard no longer acts: a held-out collapse reported now rolls nothing back.
  for (const passAt1 of [0.9, 0, 0, 0]) assert.deepEqual(await a.reportEval({ jobId: "job-1", step: 9, passAt1, n: 200 }), { policyVersion: 3, guardAction: "", guardReason: "" });
  assert.equal(weightsChecksum(a.weights().tensors), weightsChecksum(toHostList(got)));
  a.dispose();

  // A learner restarted from its checkpoints mid-run ends with the same average, and one restarted
  // after FinalizeWeights still serves the final weights and answers already_final.
  const dir = join(root, "ema-b");
  const b1 = await GrpoTrainer.open({ modelDir, checkpointDir: dir, logger });
  await b1.trainStep(request(0, batch(0), EMA));
  b1.dispose();
  const b2 = await GrpoTrainer.open({ modelDir, checkpointDir: dir, logger });
  await b2.trainStep(request(1, batch(1, [0, 1, 1, 0]), EMA));
  assert.equal((await b2.finalizeWeights()).policyVersion, 3);
  assert.equal(weightsChecksum(b2.weights().tensors), weightsChecksum(toHostList(got)));
  b2.dispose();
  const b3 = await GrpoTrainer.open({ modelDir, checkpointDir: dir, logger });
  assert.equal(weightsChecksum(b3.weights().tensors), weightsChecksum(toHostList(got)));
  assert.deepEqual(await b3.finalizeWeights(), { ...done, alreadyFinal: true });
  b3.dispose();

  // Without ema_decay there is no average: FinalizeWeights changes nothing.
  const c = await open();
  await c.trainStep(request(0, batch(0)));
  const before = weightsChecksum(c.weights().tensors);
  assert.deepEqual(await c.finalizeWeights(), { policyVersion: 1, averaged: false, alreadyFinal: false, averagedUpdates: 0, emaDecay: 0 });
  assert.equal(weightsChecksum(c.weights().tensors), before);
  c.dispose();
});

test("ema_decay outside [0, 1) is INVALID_ARGUMENT naming the field", async () => {
  const t = await open();
  for (const emaDecay of [1, -0.1, 1.5]) {
    await assert.rejects(t.trainStep(request(0, batch(0), { ...FAST, emaDecay })), (err: Error) => err instanceof InvalidArgumentError && /^params\.ema_decay: must be in \[0, 1\)/.test(err.message));
  }
  t.dispose();
});

/** Named tensors as the published list (sorted by name), for weightsChecksum. */
function toHostList(t: NamedTensors) {
  return Object.keys(t)
    .sort()
    .map((name) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: t[name]!.shape, data: t[name]!.data }));
}
