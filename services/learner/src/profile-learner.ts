import { loadavg } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, type TrainStepRequest } from "@rlmesh/shared";
import { loadModel } from "@rlmesh/shared/model/index";

import { initJax, numpy as np } from "./model/jax-runtime.js";
import { JaxPolicy } from "./model/jax-policy.js";
import { buildGrpoBatch } from "./grpo/grpo-batch.js";
import { drawMaskPairs } from "./grpo/coupled-masks.js";
import { grpoLossExtras, stackMaskPasses, type PolicyTokenBatch, type StackedPasses } from "./grpo/stacked-passes.js";
import { grpoLogProbLoss } from "./grpo/grpo-loss-jax.js";
import { grpoStackedLossReference } from "./grpo/grpo-loss-reference.js";
import { clipGradNorm } from "./optim/grad-clip.js";
import { adamwStep, initAdamW } from "./optim/adamw.js";
import { cloneNamedTensors } from "./optim/named-tensors.js";
import { padBatchToBucket } from "./trainer/batch-bucket.js";
import { LEARNER_RECIPE, resolveGrpoParams } from "./trainer/learner-recipe.js";
import { GrpoTrainer, type LearnerUpdatePath } from "./trainer/grpo-trainer.js";
import { jaxThreadCount } from "./model/worker-shim.js";
import { BENCH_PROMPTS, BENCH_SAMPLES_PER_PROMPT, benchSamples } from "./bench-learner.js";

/**
 * `rlmesh bench learner --profile`: where a TrainStep's time goes on the demo's batch (4 prompts
 * × G 8, coupled complementary masks, one stacked pass pair), measured piece by piece on the
 * policy the trainer uses, both update paths, every piece repeated `reps` times with the pieces
 * interleaved (the machine is shared: medians, and the load average is printed).
 */

export interface ProfileRow {
  /** What is measured. */
  piece: string;
  /** Median seconds per TrainStep of the demo batch (baseline path, fast path; null = not part of it). */
  baseline: number | null;
  fast: number | null;
  note: string;
}

export interface LearnerProfile {
  model: string;
  threads: number;
  reps: number;
  rows: number;
  seqLen: number;
  readPositions: number;
  loadavgBefore: number[];
  loadavgAfter: number[];
  table: ProfileRow[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** Wall seconds of `f`, or the seconds it reports itself (a number) when it times only part of its work. */
async function seconds(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  const r = await f();
  return typeof r === "number" ? r : (performance.now() - t0) / 1000;
}

function withoutReadMask(b: PolicyTokenBatch): PolicyTokenBatch {
  const { readMask: _dropped, ...rest } = b;
  return rest;
}

/** The first `rows` rows of a stacked batch (one pass of each sample: rows are ordered pass, sample). */
function firstRows(s: StackedPasses, rows: number): { tokens: PolicyTokenBatch; extras: (old: Float32Array) => Record<string, Float32Array> } {
  const T = s.tokens.seqLen;
  const n = rows * T;
  const t = s.tokens;
  const tokens: PolicyTokenBatch = {
    batchSize: rows,
    seqLen: T,
    inputIds: t.inputIds.slice(0, n),
    positionIds: t.positionIds.slice(0, n),
    attentionMask: t.attentionMask.slice(0, n),
    targets: t.targets.slice(0, n),
    readMask: t.readMask!.slice(0, n),
  };
  const sub: StackedPasses = { ...s, tokens, coef: s.coef.slice(0, n), factor: s.factor.slice(0, n), adv: s.adv.slice(0, n) };
  return { tokens, extras: (old) => grpoLossExtras(sub, old.slice(0, n), LEARNER_RECIPE_LOSS) };
}

const LEARNER_RECIPE_LOSS = resolveGrpoParams(null, LEARNER_RECIPE).update.loss;

export async function profileLearner(modelDir: string, model: string, reps: number, log: (l: string) => void): Promise<LearnerProfile> {
  await initJax();
  const loaded = await loadModel(modelDir);
  const m = loaded.manifest;
  const whole = JaxPolicy.fromLoadedModel(loaded, "whole-graph");
  const split = JaxPolicy.fromLoadedModel(loaded, "split");
  const weights = whole.initialWeights();
  const params = resolveGrpoParams(null, LEARNER_RECIPE);
  const cfg = params.update.loss;
  const samples = benchSamples(m.vocab_size, m.eos_id, m.mask_id, 0, 0);
  const scored = samples.map((s) => ({ groupId: s.promptId, promptIds: s.promptTokenIds, responseIds: s.responseTokenIds, reward: s.reward }));
  const loadavgBefore = loadavg();

  // Host-side batch preparation, as the trainer does it.
  const prep = () => {
    const built = buildGrpoBatch(scored, { padId: m.pad_id, seed: 1 });
    const batch = padBatchToBucket(built.batch!, m.pad_id, m.max_seq_len);
    const pairs = drawMaskPairs(5, batch.responseMask, batch.batchSize, batch.seqLen, params.update.maskEpochs, params.update.mask);
    return stackMaskPasses(batch, pairs, m.mask_id, cfg);
  };
  const stacked = prep();
  const tokens = stacked.tokens;
  const readPositions = tokens.readMask!.reduce((a, x) => a + x, 0);
  const lossFn = grpoLogProbLoss(cfg);
  const selfLoss = grpoLogProbLoss(cfg, { oldFromSelf: true });
  const old = await whole.tokenLogProbs(weights, tokens);
  const extras = grpoLossExtras(stacked, old, cfg);
  const { oldTerm: _o, ...extrasNoOld } = extras;
  const half = firstRows(stacked, tokens.batchSize / 2);
  const halfExtras = half.extras(old);

  // First calls: trace + compile the kernels of this batch shape (plus one execution).
  const first: Record<string, number> = {};
  const firstCall = async (k: string, f: () => Promise<unknown>) => (first[k] = await seconds(f));
  await firstCall("wholeFwd", () => whole.tokenLogProbs(weights, tokens));
  await firstCall("wholeGrad", () => whole.lossAndGrad(weights, tokens, lossFn, extras));
  await firstCall("splitFused", () => split.lossAndGrad(weights, tokens, selfLoss, extrasNoOld));
  await firstCall("splitFwd", () => split.tokenLogProbs(weights, tokens));
  await firstCall("splitFwdAll", () => split.tokenLogProbs(weights, withoutReadMask(tokens)));
  await firstCall("splitGradAll", () => split.lossAndGrad(weights, withoutReadMask(tokens), selfLoss, extrasNoOld));
  await firstCall("wholeGradHalf", () => whole.lossAndGrad(weights, half.tokens, lossFn, halfExtras));
  await firstCall("splitGradHalf", () => split.lossAndGrad(weights, half.tokens, selfLoss, (({ oldTerm: _x, ...r }) => r)(halfExtras)));

  const grads = (await split.lossAndGrad(weights, tokens, selfLoss, extrasNoOld)).grads;
  const scratch = await mkdtemp(join(tmpdir(), "rlmesh-profile-learner-"));
  const logger = createLogger("profile-learner", { level: "error" });
  const trainers: Record<LearnerUpdatePath, GrpoTrainer> = {
    baseline: await GrpoTrainer.open({ modelDir, checkpointDir: join(scratch, "base"), logger, updatePath: "baseline" }),
    fast: await GrpoTrainer.open({ modelDir, checkpointDir: join(scratch, "fast"), logger, updatePath: "fast" }),
  };
  const req = (t: GrpoTrainer, n: number): TrainStepRequest => ({
    jobId: "bench",
    step: n,
    samples: benchSamples(m.vocab_size, m.eos_id, m.mask_id, t.status().policyVersion, n),
    params: null,
    seed: 0,
  });
  for (const t of Object.values(trainers)) await t.trainStep(req(t, 0));

  const pieces: Record<string, () => Promise<unknown>> = {
    wholeFwd: () => whole.tokenLogProbs(weights, tokens),
    wholeGrad: () => whole.lossAndGrad(weights, tokens, lossFn, extras),
    wholeGradHalf: () => whole.lossAndGrad(weights, half.tokens, lossFn, halfExtras),
    splitFused: () => split.lossAndGrad(weights, tokens, selfLoss, extrasNoOld),
    splitFwd: () => split.tokenLogProbs(weights, tokens),
    splitFwdAll: () => split.tokenLogProbs(weights, withoutReadMask(tokens)),
    splitGradAll: () => split.lossAndGrad(weights, withoutReadMask(tokens), selfLoss, extrasNoOld),
    splitGradHalf: () => split.lossAndGrad(weights, half.tokens, selfLoss, (({ oldTerm: _x, ...r }) => r)(halfExtras)),
    upload: async () => {
      const arrs = Object.values(weights).map((w) => np.array(w.data, { shape: w.shape }));
      for (const a of arrs) await a.blockUntilReady();
      for (const a of arrs) a.dispose();
    },
    download: async () => {
      const arrs = Object.values(weights).map((w) => np.array(w.data, { shape: w.shape }));
      for (const a of arrs) await a.data();
    },
    optimizer: async () => {
      const w = cloneNamedTensors(weights);
      const g = cloneNamedTensors(grads);
      const opt = initAdamW(w);
      const t0 = performance.now();
      clipGradNorm(g, params.update.maxGradNorm);
      adamwStep(w, g, opt, 1e-4, params.update.adamw);
      return (performance.now() - t0) / 1000;
    },
    hostPrep: async () => {
      const s = prep();
      grpoStackedLossReference(grpoLossExtras(s, old, cfg), old, cfg);
    },
    checkpoint: () => trainers.fast.checkpoint(),
    stepBaseline: () => trainers.baseline.trainStep(req(trainers.baseline, ++stepNo)),
    stepFast: () => trainers.fast.trainStep(req(trainers.fast, ++stepNo)),
  };
  let stepNo = 0;
  const times: Record<string, number[]> = {};
  for (let r = 0; r < reps; r++) {
    // Alternate the order so neither path always runs first.
    const keys = Object.keys(pieces);
    for (const k of r % 2 ? keys.reverse() : keys) (times[k] ??= []).push(await seconds(pieces[k]!));
    log(`  profile: repetition ${r + 1}/${reps} done (load average ${loadavg()[0]!.toFixed(2)})`);
  }
  for (const t of Object.values(trainers)) t.dispose();
  await rm(scratch, { recursive: true, force: true });
  whole.dispose();
  split.dispose();
  const med = (k: string) => median(times[k]!);
  const compile = (k: string) => Math.max(0, first[k]! - med(k));

  const table: ProfileRow[] = [
    { piece: "TrainStep (whole, incl. checkpoint)", baseline: med("stepBaseline"), fast: med("stepFast"), note: "GrpoTrainer.trainStep, steady state" },
    { piece: "kernel compilation, new batch shape", baseline: compile("wholeFwd") + compile("wholeGrad"), fast: compile("splitFused"), note: "first call − median, once per (rows, seq bucket[, head rows]) shape" },
    { piece: "old log-prob forward", baseline: med("wholeFwd"), fast: null, note: "fast: taken from the update's own forward (stop-gradient)" },
    { piece: "forward+backward+loss", baseline: med("wholeGrad"), fast: med("splitFused"), note: "one jitted valueAndGrad over all stacked rows" },
    { piece: "  of which backward", baseline: med("wholeGrad") - med("wholeFwd"), fast: med("splitFused") - med("splitFwd"), note: "forward+backward − forward" },
    {
      piece: "  of which one-hot embedding grad",
      baseline: med("wholeGrad") - med("splitGradAll"),
      fast: null,
      note: "whole graph − split graph with the head at every position (the gather embedding's scatter-add replaces it)",
    },
    {
      piece: "  of which LM head at unread positions",
      baseline: med("splitGradAll") - med("splitFused"),
      fast: null,
      note: `head+log-softmax over all ${tokens.batchSize * tokens.seqLen} positions vs the ${readPositions} read ones (fwd+bwd)`,
    },
    {
      piece: "  of which the coupled second pass",
      baseline: med("wholeGrad") - med("wholeGradHalf"),
      fast: med("splitFused") - med("splitGradHalf"),
      note: `${tokens.batchSize} stacked rows − ${tokens.batchSize / 2} (one pass per sample); same batch, not a second call`,
    },
    { piece: "host→wasm weight upload", baseline: 2 * med("upload"), fast: med("upload"), note: "np.array of every weight, per policy call" },
    { piece: "wasm→host gradient download", baseline: med("download"), fast: med("download"), note: "≈ .data() of weight-sized arrays" },
    { piece: "optimizer (clip + AdamW, host)", baseline: med("optimizer"), fast: med("optimizer"), note: "" },
    { piece: "host batch prep + loss stats", baseline: med("hostPrep"), fast: med("hostPrep"), note: "advantages, masks, stacking, extras, reference stats" },
    { piece: "checkpoint write", baseline: med("checkpoint"), fast: med("checkpoint"), note: "every TrainStep (RLMESH_CHECKPOINT_EVERY=1)" },
  ];
  return {
    model,
    threads: jaxThreadCount(),
    reps,
    rows: tokens.batchSize,
    seqLen: tokens.seqLen,
    readPositions,
    loadavgBefore,
    loadavgAfter: loadavg(),
    table,
  };
}

export function formatProfile(p: LearnerProfile): string[] {
  const f = (x: number | null) => (x === null ? "—" : x.toFixed(3));
  const lines = [
    `profile: ${p.model}; ${BENCH_PROMPTS}×${BENCH_SAMPLES_PER_PROMPT} samples → ${p.rows} stacked rows × ${p.seqLen} tokens, ${p.readPositions} read positions; ` +
      `jax-js threads ${p.threads} (RLMESH_JAX_THREADS); medians of ${p.reps}; load average ${p.loadavgBefore.map((x) => x.toFixed(2)).join(" ")} → ${p.loadavgAfter.map((x) => x.toFixed(2)).join(" ")}`,
    `| piece | baseline s | fast s | how measured |`,
    `|---|---:|---:|---|`,
  ];
  for (const r of p.table) lines.push(`| ${r.piece} | ${f(r.baseline)} | ${f(r.fast)} | ${r.note} |`);
  return lines;
}
