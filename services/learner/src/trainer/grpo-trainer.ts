import { createHash } from "node:crypto";
import { InvalidArgumentError, type HostTensor, type LearnerStatusIn, type Logger, type TrainStatsIn, type TrainStepRequest } from "@rlmesh/shared";
import { layerName, loadModel, parseModel, readWeights, type ModelManifest } from "@rlmesh/shared/model/index";
import { modelFingerprint } from "@rlmesh/shared/model/model-fingerprint";
import { checkTrainable, type ModelShape } from "./model-compat.js";

import { AppliedSteps, requestFingerprint, type AppliedStep } from "./applied-steps.js";
import { padBatchToBucket } from "./batch-bucket.js";
import { CheckpointStore, DEFAULT_KEEP_LAST, type CheckpointData } from "../checkpoint/checkpoint-store.js";
import {
  DEFAULT_COLLAPSE_GUARD_CONFIG,
  initialCollapseGuardState,
  protectedCheckpoints,
  noteCheckpoint,
  observeHeldOutPass,
  observeStepReward,
  type CollapseDecision,
  type CollapseGuardConfig,
  type CollapseGuardState,
} from "./collapse-guard.js";
import { buildGrpoBatch, type GrpoBatch } from "../grpo/grpo-batch.js";
import { runGrpoUpdate, type GrpoPolicy } from "../grpo/grpo-update.js";
import { deriveSeed } from "../grpo/seeded-rng.js";
import { LEARNER_RECIPE, resolveGrpoParams, type LearnerRecipe } from "./learner-recipe.js";
import type { LearnerMetrics } from "../learner-metrics.js";
import { ChunkedPolicy } from "../grpo/chunked-policy.js";
import { MixedVersionPolicy } from "./mixed-version-policy.js";
import { initJax, wasmHeapBytes } from "../model/jax-runtime.js";
import { JaxPolicy, type JaxPolicyMode } from "../model/jax-policy.js";
import { initAdamW, type AdamWState } from "../optim/adamw.js";
import { learningRateAt } from "../optim/lr-schedule.js";
import { cloneNamedTensors, emaUpdateNamed, type NamedTensors } from "../optim/named-tensors.js";
import {
  type FinalizeResult,
  JobFinalizedError,
  RollbackCheckpointMissingError,
  type ReportEvalResult,
  type Trainer,
  type TrainStepResult,
} from "./trainer.js";
import { validateTrainRequest } from "./train-request-validation.js";
import {
  DEFAULT_WARMUP_MAX_HEAP_MIB,
  explainHeapExhausted,
  heapBudgetRefusal,
  shapeHeapLedger,
  shapeKey,
  warmupBatch,
  type WarmedShape,
  type WarmupRecipe,
  type WarmupReport,
  type WarmupShape,
} from "./warmup.js";
import { DEFAULT_MAX_STALENESS } from "@rlmesh/shared/decoding-defaults";

export { DEFAULT_MAX_STALENESS };
/**
 * Tokens (rows × sequence length) the policy sees in one forward/backward; larger batches are
 * run in row chunks with their gradients summed (grpo/chunked-policy.ts).
 */
export const DEFAULT_MAX_TOKENS_PER_PASS = 8192;
/** Checkpoint after every N TrainSteps (1 for the tiny model: a few MB, milliseconds). */
export const DEFAULT_CHECKPOINT_EVERY = 1;
/** Seed of the run when a TrainStep carries seed 0. */
export const DEFAULT_RUN_SEED = 1;
/** Sub-streams of one step's seed. */
const SEED_MASKS = 1;
const SEED_SUBSTITUTION = 2;
/** Mask seed of the warm-up's dummy batches (any: their update is thrown away). */
const SEED_WARMUP = 0x5741524d;
/** Checkpoint tensor names of the previous version's weights (kept for stale samples' old log-probs). */
const PREVIOUS_PREFIX = "prev@";
/** Checkpoint tensor names of the weights' moving average (GrpoParams.ema_decay). */
const EMA_PREFIX = "ema@";

/**
 * How a TrainStep's update is computed; both give the same weights (grpo-update-paths.test.ts).
 * `fast`: the policy's split graph (embedding by gather, LM head only at read positions) and the
 * on-policy old log-probs taken from the update's own forward. `baseline`: the whole ONNX graph
 * and a separate old-log-prob forward (the learner before issue 17, kept for comparison).
 */
export type LearnerUpdatePath = "fast" | "baseline";
export const LEARNER_UPDATE_ENV = "RLMESH_LEARNER_UPDATE";

/** RLMESH_LEARNER_UPDATE (`fast` when unset). */
export function learnerUpdatePath(env: NodeJS.ProcessEnv = process.env): LearnerUpdatePath {
  const v = env[LEARNER_UPDATE_ENV];
  if (v === undefined || v === "" || v === "fast") return "fast";
  if (v === "baseline") return "baseline";
  throw new Error(`${LEARNER_UPDATE_ENV} must be "fast" or "baseline", got "${v}"`);
}

export interface GrpoTrainerOptions {
  /** @defaultValue learnerUpdatePath() (RLMESH_LEARNER_UPDATE, else "fast") */
  updatePath?: LearnerUpdatePath;
  modelDir: string;
  checkpointDir: string;
  logger: Logger;
  /** @defaultValue DEFAULT_MAX_STALENESS */
  maxStaleness?: number;
  /** @defaultValue DEFAULT_MAX_TOKENS_PER_PASS */
  maxTokensPerPass?: number;
  /** @defaultValue DEFAULT_CHECKPOINT_EVERY */
  checkpointEvery?: number;
  /** @defaultValue DEFAULT_KEEP_LAST */
  keepCheckpoints?: number;
  /** @defaultValue LEARNER_RECIPE */
  recipe?: LearnerRecipe;
  guard?: Partial<CollapseGuardConfig>;
  /** Used for a fresh start only; a resumed run keeps its checkpoint's. @defaultValue DEFAULT_RUN_SEED */
  runSeed?: number;
  metrics?: LearnerMetrics;
  /**
   * A fresh start's weights instead of model.onnx's (a job's `init_from`): every trainable weight
   * of the model with its shape. Ignored when `checkpointDir` has a checkpoint (resume).
   */
  initialWeights?: { tensors: NamedTensors; field: string };
  /**
   * Checks the loaded model before anything else is built (e.g. against the architecture the
   * rollout workers serve); throws to refuse it.
   */
  validateModel?: (model: ModelShape) => void | Promise<void>;
}

/** JSON part of a learner checkpoint (CheckpointData.extra). */
interface LearnerExtra {
  learnerStep: number;
  runSeed: number;
  modelSha256: string;
  skippedBatches: number;
  guard: CollapseGuardState;
  applied: AppliedStep[];
  /** The moving average's decay and the applied updates it has seen (absent: none kept). */
  ema?: { decay: number; updates: number };
  /** FinalizeWeights installed the job's final weights: no TrainStep after it. */
  finalized?: boolean;
}

function toHost(t: NamedTensors): HostTensor[] {
  return Object.keys(t)
    .sort()
    .map((name) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: [...t[name]!.shape], data: Float32Array.from(t[name]!.data) }));
}

/**
 * Float initializers of the model that are not trained (e.g. `const.*` rotary tables). A published
 * version carries them too: rollout workers swap the graph's whole float initializer set at once.
 */
function constantTensors(modelBytes: Uint8Array, trainable: readonly string[]): HostTensor[] {
  const skip = new Set(trainable);
  return [...readWeights(parseModel(modelBytes))]
    .filter(([name]) => !skip.has(name))
    .map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: [...w.shape], data: w.data }));
}

function meanStd(xs: ArrayLike<number>): [number, number] {
  const n = xs.length;
  if (n === 0) return [0, 0];
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i]!;
  const m = s / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (xs[i]! - m) ** 2;
  return [m, Math.sqrt(ss / n)];
}

/** One uint32 seed from the request's uint64 seed (0 = derive from the run seed) and the step. */
function stepSeed(reqSeed: number, runSeed: number, learnerStep: number): number {
  if (!reqSeed) return deriveSeed(runSeed, learnerStep);
  return deriveSeed(Math.floor(reqSeed / 2 ** 32) >>> 0, reqSeed >>> 0, learnerStep);
}

/** What a trainer runs besides its options: the policy graph and the model's identity. */
interface TrainerModel {
  policy: JaxPolicy;
  manifest: ModelManifest;
  modelSha256: string;
  /** The graph's non-trainable tensors (published with the weights). */
  constants: HostTensor[];
}

/** The trainer's state as one record: what a checkpoint saves and restores. */
interface TrainerState {
  current: NamedTensors;
  /** The previous version's weights (old log-probs of one-version-stale samples). */
  previous: NamedTensors | null;
  optimizer: AdamWState;
  version: number;
  learnerStep: number;
  runSeed: number;
  guard: CollapseGuardState;
  applied: AppliedSteps;
  skippedBatches: number;
  ema?: { weights: NamedTensors; decay: number; updates: number } | null;
  finalized?: boolean;
}

/**
 * The GRPO learner's state machine: weights, optimizer, the previous version's weights, policy
 * version, collapse guard, and the record of applied (job, step)s, all checkpointed together so
 * a learner killed at any point resumes to the same next update.
 */
export class GrpoTrainer implements Trainer {
  private lock: Promise<unknown> = Promise.resolve();
  private published: { version: number; tensors: HostTensor[] };
  private lastCheckpoint = "";
  private lastCheckpointStep = -1;
  private readonly store: CheckpointStore;
  private readonly guardCfg: CollapseGuardConfig;
  private readonly maxStaleness: number;
  private readonly checkpointEvery: number;
  private readonly recipe: LearnerRecipe;
  private readonly updatePath: LearnerUpdatePath;

  private readonly policy: JaxPolicy;
  private readonly manifest: ModelManifest;
  private readonly modelSha256: string;
  private readonly constants: HostTensor[];
  private current: NamedTensors;
  private previous: NamedTensors | null;
  private optimizer: AdamWState;
  private version: number;
  private learnerStep: number;
  private runSeed: number;
  private guard: CollapseGuardState;
  private applied: AppliedSteps;
  private skippedBatches: number;
  /** The weights' moving average (GrpoParams.ema_decay > 0), its decay and the updates it has seen. */
  private ema: { weights: NamedTensors; decay: number; updates: number } | null;
  private finalized: boolean;
  /** Batch shapes (shapeKey) whose update kernels are compiled: by a TrainStep or the warm-up. */
  private readonly compiled = new Set<string>();
  private warming: { stop: string; done: Promise<WarmupReport> } | null = null;
  /** A TrainStep has arrived at this trainer (JobTrainers then starts no warm-up for it). */
  private stepArrived = false;

  private constructor(
    private readonly opts: GrpoTrainerOptions,
    model: TrainerModel,
    state: TrainerState,
  ) {
    ({ policy: this.policy, manifest: this.manifest, modelSha256: this.modelSha256, constants: this.constants } = model);
    ({
      current: this.current,
      previous: this.previous,
      optimizer: this.optimizer,
      version: this.version,
      learnerStep: this.learnerStep,
      runSeed: this.runSeed,
      guard: this.guard,
      applied: this.applied,
      skippedBatches: this.skippedBatches,
    } = state);
    this.ema = state.ema ?? null;
    this.finalized = state.finalized ?? false;
    this.guardCfg = { ...DEFAULT_COLLAPSE_GUARD_CONFIG, ...opts.guard };
    this.maxStaleness = opts.maxStaleness ?? DEFAULT_MAX_STALENESS;
    this.checkpointEvery = opts.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    this.recipe = opts.recipe ?? LEARNER_RECIPE;
    this.updatePath = opts.updatePath ?? learnerUpdatePath();
    this.store = new CheckpointStore(opts.checkpointDir, {
      keepLast: opts.keepCheckpoints ?? DEFAULT_KEEP_LAST,
      // The collapse guard's rollback targets must survive pruning.
      isProtected: (s) => protectedCheckpoints(this.guard).includes(s),
    });
    this.published = { version: this.version, tensors: this.publishable() };
  }

  /**
   * Loads and validates the model directory, then resumes from the newest valid checkpoint in
   * `checkpointDir` (or starts at version 0 from the model's weights and writes checkpoint 0).
   */
  static async open(opts: GrpoTrainerOptions): Promise<GrpoTrainer> {
    const model = await loadModel(opts.modelDir);
    const m = model.manifest;
    checkTrainable(opts.modelDir, model);
    await opts.validateModel?.({
      manifest: m,
      weights: [...readWeights(parseModel(model.modelBytes))].map(([name, w]) => ({ name, shape: [...w.shape] })),
      fingerprint: await modelFingerprint(model),
    });
    await initJax();
    const past: string[] = [];
    for (let i = 0; i < m.n_layers; i++) {
      if (m.inputs.past_key) past.push(layerName(m.inputs.past_key, i));
      if (m.inputs.past_value) past.push(layerName(m.inputs.past_value, i));
    }
    const mode: JaxPolicyMode = (opts.updatePath ?? learnerUpdatePath()) === "fast" ? "split" : "whole-graph";
    const policy = JaxPolicy.fromModelBytes(model.modelBytes, {
      nLayers: m.n_layers,
      vocabSize: m.vocab_size,
      pastInputNames: past,
      mode,
      shiftedLogits: m.shifted_logits,
    });
    const modelSha256 = createHash("sha256").update(model.modelBytes).digest("hex");
    const constants = constantTensors(model.modelBytes, policy.weightNames);
    const trainerModel: TrainerModel = { policy, manifest: m, modelSha256, constants };
    const store = new CheckpointStore(opts.checkpointDir);
    const ck = await store.loadLatest();
    const present = await store.listSteps();
    if (!ck && present.length > 0) {
      // Starting over at version 0 would silently discard the run: make the operator decide.
      throw new Error(
        `${opts.checkpointDir} has checkpoint directories (steps ${present.slice(0, 5).join(", ")}) but none is valid; ` +
          "move them away to start from the model directory",
      );
    }
    let trainer: GrpoTrainer;
    if (ck) {
      const extra = ck.extra as unknown as LearnerExtra;
      if (extra.modelSha256 !== modelSha256) {
        throw new Error(
          `checkpoint ${opts.checkpointDir} (step ${ck.step}) was trained from a different model.onnx than ${opts.modelDir} ` +
            `(sha256 ${extra.modelSha256?.slice(0, 12)}… vs ${modelSha256.slice(0, 12)}…): point RLMESH_CHECKPOINT_DIR elsewhere or remove it`,
        );
      }
      const { current, previous, ema } = splitWeights(ck.weights);
      for (const name of policy.weightNames) {
        if (!current[name]) throw new Error(`checkpoint step ${ck.step}: weight ${name} of the model is missing`);
      }
      trainer = new GrpoTrainer(opts, trainerModel, {
        current,
        previous,
        optimizer: ck.optimizer,
        version: ck.policyVersion,
        learnerStep: extra.learnerStep,
        runSeed: extra.runSeed,
        guard: { ...initialCollapseGuardState(), ...extra.guard },
        applied: new AppliedSteps(extra.applied),
        skippedBatches: extra.skippedBatches,
        ema: ema && extra.ema ? { weights: ema, ...extra.ema } : null,
        finalized: extra.finalized ?? false,
      });
      trainer.lastCheckpointStep = ck.step;
      trainer.lastCheckpoint = `${opts.checkpointDir}/ckpt-${String(ck.step).padStart(12, "0")}`;
      opts.logger.info("learner resumed from checkpoint", { step: ck.step, policyVersion: ck.policyVersion, optimizerStep: ck.optimizer.step });
    } else {
      const weights = opts.initialWeights ? checkedInitialWeights(policy.initialWeights(), opts.initialWeights) : policy.initialWeights();
      trainer = new GrpoTrainer(opts, trainerModel, {
        current: weights,
        previous: null,
        optimizer: initAdamW(weights),
        version: 0,
        learnerStep: 0,
        runSeed: opts.runSeed ?? DEFAULT_RUN_SEED,
        guard: initialCollapseGuardState(),
        applied: new AppliedSteps(),
        skippedBatches: 0,
        ema: null,
        finalized: false,
      });
      // Checkpoint 0 is the base model: the collapse guard's first rollback target.
      await trainer.saveCheckpoint();
      opts.logger.info("learner started from the model directory", {
        modelDir: opts.modelDir,
        model: m.name,
        ...(opts.initialWeights ? { weightsFrom: opts.initialWeights.field } : {}),
      });
    }
    opts.metrics?.policyVersion.set(trainer.version);
    return trainer;
  }

  get modelManifest(): ModelManifest {
    return this.manifest;
  }

  validate(req: TrainStepRequest): void {
    if (this.applied.find(req)) return;
    this.check(req);
  }

  trainStep(req: TrainStepRequest): Promise<TrainStepResult> {
    // The warm-up uses the time before the job's first TrainStep: from here on a shape is compiled
    // when a step needs it (the shape in progress, if any, finishes first).
    this.stepArrived = true;
    if (this.warming && !this.warming.stop) this.warming.stop = "a TrainStep arrived";
    return this.exclusive(() => this.trainStepLocked(req));
  }

  reportEval(obs: { jobId: string; step: number; passAt1: number; n: number }): Promise<ReportEvalResult> {
    if (!(obs.passAt1 >= 0 && obs.passAt1 <= 1)) {
      return Promise.reject(new InvalidArgumentError("pass_at1", `must be a fraction in [0, 1], got ${obs.passAt1}`));
    }
    return this.exclusive(async () => {
      // The job's final weights are installed: the guard has nothing left to protect (a rollback
      // would put trained weights back in their place).
      if (this.finalized) return { policyVersion: this.version, guardAction: "", guardReason: "" };
      // The guard counts in learner steps (its checkpoints are learner steps), not job steps.
      const g = observeHeldOutPass(this.guard, this.guardCfg, { step: this.learnerStep, passAt1: obs.passAt1, n: obs.n });
      if (g.decision.kind === "rollback") {
        await this.rollback(g.decision, g.state);
        await this.saveCheckpoint();
        return { policyVersion: this.version, guardAction: "rollback", guardReason: g.decision.reason };
      }
      this.guard = g.state;
      if (g.decision.kind === "stop") {
        this.logGuardStop(g.decision.reason);
        return { policyVersion: this.version, guardAction: "stop", guardReason: g.decision.reason };
      }
      return { policyVersion: this.version, guardAction: "", guardReason: "" };
    });
  }

  status(): LearnerStatusIn & { policyVersion: number; step: number; skippedBatches: number } {
    return {
      policyVersion: this.version,
      step: this.learnerStep,
      lastCheckpoint: this.lastCheckpoint,
      lastCheckpointStep: this.lastCheckpointStep,
      modelName: this.manifest.name,
      skippedBatches: this.skippedBatches,
    };
  }

  checkpoint(): Promise<{ path: string; step: number; policyVersion: number }> {
    return this.exclusive(async () => ({ path: await this.saveCheckpoint(), step: this.learnerStep, policyVersion: this.version }));
  }

  weights(): { version: number; tensors: HostTensor[] } {
    return this.published;
  }

  dispose(): void {
    if (this.warming) this.warming.stop ||= "the trainer was disposed";
    this.policy.dispose();
  }

  /**
   * Compiles the update's kernels for each of `shapes` (in the caller's order) by
   * running the update, as a TrainStep of that shape would, on a dummy batch and on copies of the
   * weights (a fresh optimizer state for the copy): the trainer's weights, optimizer state,
   * version and checkpoints do not change. Each shape runs under the trainer's lock; no new shape
   * starts once a TrainStep has arrived (that step waits for the shape in progress only; later
   * shapes compile when a step needs them, as without warm-up), after `recipe.maxSeconds`, or after
   * stopWarmup. A shape that a TrainStep (or an earlier warm-up) compiled is not run again:
   * nothing is compiled twice. Logs one line per shape and a total; sets
   * rlmesh_learner_warmup_seconds. One warm-up per trainer: a second call returns the first's.
   */
  warmup(shapes: readonly WarmupShape[], recipe: WarmupRecipe): Promise<WarmupReport> {
    if (this.warming) return this.warming.done;
    const state = { stop: "", done: Promise.resolve(null as unknown as WarmupReport) };
    state.done = this.runWarmup(shapes, recipe, state);
    this.warming = state;
    return state.done;
  }

  /** True once a TrainStep has arrived (a warm-up then would only compile between steps). */
  get hasTrainSteps(): boolean {
    return this.stepArrived;
  }

  /** The running or finished warm-up's report, or null when none was started. */
  warmupReport(): Promise<WarmupReport> | null {
    return this.warming?.done ?? null;
  }

  /** Starts no further warm-up shape and waits for the one in progress (before dispose); `why` goes into the report's skipped shapes. */
  async stopWarmup(why = "another job started"): Promise<void> {
    if (!this.warming) return;
    this.warming.stop ||= `stopped (${why})`;
    await this.warming.done.catch(() => undefined);
  }

  /** Copies of the weights and optimizer state, and the version (tests, benches). */
  trainingState(): { version: number; weights: NamedTensors; optimizer: AdamWState } {
    const o = this.optimizer;
    return { version: this.version, weights: cloneNamedTensors(this.current), optimizer: { step: o.step, m: cloneNamedTensors(o.m), v: cloneNamedTensors(o.v) } };
  }

  private async runWarmup(shapes: readonly WarmupShape[], recipe: WarmupRecipe, state: { stop: string }): Promise<WarmupReport> {
    const t0 = performance.now();
    const out: WarmedShape[] = [];
    const maxHeapMiB = recipe.maxHeapMiB ?? DEFAULT_WARMUP_MAX_HEAP_MIB;
    let warmSeconds = 0;
    let run = 0;
    for (const shape of shapes) {
      let why = state.stop || ((performance.now() - t0) / 1000 >= recipe.maxSeconds ? `past the ${recipe.maxSeconds} s bound` : "");
      const r: WarmedShape = why
        ? { ...shape, outcome: "skipped", seconds: 0 }
        : await this.exclusive(() => {
            // A TrainStep queued behind the previous shape goes first: this one is not run.
            // jax-js's wasm heap never shrinks and a shape's buffers serve that shape only: no
            // shape starts that would take it past the budget (the job's own shapes need the rest).
            why = state.stop || (this.compiled.has(shapeKey(shape.rows, shape.seqLen)) ? "" : heapBudgetRefusal(wasmHeapBytes(), shapeHeapLedger.estimate(this.heapTag(), shape), maxHeapMiB, run));
            return why ? Promise.resolve<WarmedShape>({ ...shape, outcome: "skipped", seconds: 0 }) : this.warmShape(shape, recipe);
          });
      if (r.outcome === "compiled") run++;
      out.push(r);
      warmSeconds += r.seconds;
      const heap = wasmHeapBytes();
      this.opts.logger.info("learner warm-up: batch shape", {
        rows: r.rows,
        seqLen: r.seqLen,
        outcome: r.outcome,
        seconds: Number(r.seconds.toFixed(3)),
        ...(heap !== null ? { wasmHeapMiB: Math.round(heap / 2 ** 20) } : {}),
        ...(r.outcome === "skipped" ? { why } : {}),
      });
    }
    const heap = wasmHeapBytes();
    const report: WarmupReport = { shapes: out, seconds: (performance.now() - t0) / 1000, warmSeconds, ...(heap !== null ? { wasmHeapBytes: heap } : {}) };
    this.opts.metrics?.warmupSeconds.set(warmSeconds);
    this.opts.logger.info("learner warm-up done", {
      compiled: out.filter((s) => s.outcome === "compiled").length,
      already: out.filter((s) => s.outcome === "already").length,
      skipped: out.filter((s) => s.outcome === "skipped").length,
      warmSeconds: Number(warmSeconds.toFixed(3)),
      seconds: Number(report.seconds.toFixed(3)),
      ...(heap !== null ? { wasmHeapMiB: Math.round(heap / 2 ** 20), maxHeapMiB } : {}),
    });
    return report;
  }

  /** One shape's warm-up (under the lock): the update of a dummy batch on a copy of the weights. */
  private async warmShape(shape: WarmupShape, recipe: WarmupRecipe): Promise<WarmedShape> {
    const key = shapeKey(shape.rows, shape.seqLen);
    if (this.compiled.has(key)) return { ...shape, outcome: "already", seconds: 0 };
    const t0 = performance.now();
    const m = this.manifest;
    const batch = padBatchToBucket(warmupBatch(shape, recipe, m), m.pad_id, m.max_seq_len);
    const params = resolveGrpoParams(null, this.recipe);
    const weights = cloneNamedTensors(this.current);
    await this.shapeUpdate(batch, false, () =>
      runGrpoUpdate({
        policy: this.chunkedPolicy(batch.seqLen),
        weights,
        optimizer: initAdamW(weights),
        batch,
        maskId: m.mask_id,
        seed: SEED_WARMUP,
        lrAt: (s) => learningRateAt(s, params.schedule, 1),
        cfg: params.update,
        fuseOldLogProbs: this.updatePath === "fast",
      }),
    );
    return { ...shape, outcome: "compiled", seconds: (performance.now() - t0) / 1000 };
  }

  /**
   * Runs `update` on `batch`'s shape (`stale`: with the old-log-prob forward): jax-js's "memory32
   * limit" error is explained (explainHeapExhausted); then the shape counts as compiled and the
   * process's ShapeHeapLedger notes what it grew jax-js's wasm heap by.
   */
  private async shapeUpdate<T>(batch: GrpoBatch, stale: boolean, update: () => Promise<T>): Promise<T> {
    const key = shapeKey(batch.batchSize, batch.seqLen, stale);
    const heapBefore = wasmHeapBytes();
    const result = await update().catch((err: unknown) => {
      throw explainHeapExhausted(err, key, wasmHeapBytes());
    });
    this.compiled.add(key);
    const after = wasmHeapBytes();
    if (heapBefore !== null && after !== null) shapeHeapLedger.record(this.heapTag(), key, batch.batchSize, batch.seqLen, after - heapBefore);
    return result;
  }

  /** What a shape's buffer sizes depend on besides the shape: the model, the update path, the pass size. */
  private heapTag(): string {
    return `${this.modelSha256}:${this.updatePath}:${this.opts.maxTokensPerPass ?? DEFAULT_MAX_TOKENS_PER_PASS}`;
  }

  /** The policy in row chunks of at most maxTokensPerPass tokens, for batches of `seqLen`. */
  private chunkedPolicy(seqLen: number): ChunkedPolicy {
    const maxTokens = this.opts.maxTokensPerPass ?? DEFAULT_MAX_TOKENS_PER_PASS;
    return new ChunkedPolicy(this.policy, Math.max(1, Math.floor(maxTokens / seqLen)));
  }

  /** A copy of the current weights plus the model's constants, as one version. */
  private publishable(): HostTensor[] {
    return [...toHost(this.current), ...this.constants].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private check(req: TrainStepRequest) {
    if (this.finalized) {
      throw new JobFinalizedError(`job ${req.jobId}'s final weights are installed (FinalizeWeights, policy v${this.version}): it takes no more TrainSteps`);
    }
    const samples = validateTrainRequest(req, {
      vocabSize: this.manifest.vocab_size,
      maskId: this.manifest.mask_id,
      eosId: this.manifest.eos_id,
      maxSeqLen: this.manifest.max_seq_len,
      policyVersion: this.version,
      maxStaleness: this.maxStaleness,
    });
    return { samples, params: resolveGrpoParams(req.params, this.recipe) };
  }

  private async trainStepLocked(req: TrainStepRequest): Promise<TrainStepResult> {
    const t0 = performance.now();
    const fingerprint = requestFingerprint(req);
    const hit = this.applied.find(req, fingerprint);
    if (hit) {
      this.opts.logger.info("TrainStep already applied; returning the recorded result", { jobId: req.jobId, step: req.step });
      return { policyVersion: hit.policyVersion, stats: { ...hit.stats, replayed: true }, replayed: true };
    }
    const { samples, params } = this.check(req);
    const step = this.learnerStep;
    const seed = stepSeed(req.seed, this.runSeed, step);
    const rewardMean = samples.reduce((a, s) => a + s.reward, 0) / samples.length;
    const base: TrainStatsIn = { numSamples: samples.length, rewardMean, skipped: false, guardAction: "", guardReason: "", replayed: false };
    let stats: TrainStatsIn;
    let forceCheckpoint = false;

    const g = observeStepReward(this.guard, this.guardCfg, { step, rewardMean });
    if (g.decision.kind === "rollback") {
      // The batch came from a collapsed policy: restore instead of training on it.
      await this.rollback(g.decision, g.state);
      forceCheckpoint = true;
      stats = { ...base, guardAction: "rollback", guardReason: g.decision.reason, lr: learningRateAt(this.optimizer.step, params.schedule, this.guard.lrScale) };
    } else {
      this.guard = g.state;
      stats = await this.update(samples, params, seed, base, req);
      if (g.decision.kind === "stop") {
        this.logGuardStop(g.decision.reason);
        stats = { ...stats, guardAction: "stop", guardReason: g.decision.reason };
      }
    }

    this.learnerStep += 1;
    stats.seconds = (performance.now() - t0) / 1000;
    this.applied.add({ jobId: req.jobId, step: req.step, fingerprint, policyVersion: this.version, stats });
    if (forceCheckpoint || this.learnerStep % this.checkpointEvery === 0) await this.saveCheckpoint();
    this.opts.metrics?.observeStep(this.version, stats);
    return { policyVersion: this.version, stats, replayed: false };
  }

  private async update(
    samples: ReturnType<typeof validateTrainRequest>,
    params: ReturnType<typeof resolveGrpoParams>,
    seed: number,
    base: TrainStatsIn,
    req: TrainStepRequest,
  ): Promise<TrainStatsIn> {
    const m = this.manifest;
    const built = buildGrpoBatch(samples, {
      padId: m.pad_id,
      seed: deriveSeed(seed, SEED_SUBSTITUTION),
      substitute: params.substitute,
      advantage: params.advantage,
    });
    const lrNow = learningRateAt(this.optimizer.step, params.schedule, this.guard.lrScale);
    if (!built.batch) {
      this.skippedBatches += 1;
      const [advMean, advStd] = meanStd(built.advantages);
      return { ...base, skipped: true, advMean, advStd, substitutions: 0, lr: lrNow };
    }
    const batch = padBatchToBucket(built.batch, m.pad_id, m.max_seq_len);
    // Old log-probs come from the version that generated each sample (this one or the previous).
    const rowIsPrevious = Array.from(built.sourceIndex, (src) => req.samples[src]!.policyVersion < this.version);
    const chunked = this.chunkedPolicy(batch.seqLen);
    let policy: GrpoPolicy = chunked;
    let oldWeights: NamedTensors | undefined;
    if (rowIsPrevious.some(Boolean) && this.previous) {
      if (rowIsPrevious.every(Boolean)) oldWeights = this.previous;
      else {
        const mixed = new MixedVersionPolicy(chunked, {}, this.current, this.previous, rowIsPrevious);
        policy = mixed;
        oldWeights = mixed.oldWeightsMarker;
      }
    }
    const before = cloneNamedTensors(this.current);
    const result = await this.shapeUpdate(batch, oldWeights !== undefined, () =>
      runGrpoUpdate({
        policy,
        weights: this.current,
        optimizer: this.optimizer,
        batch,
        maskId: m.mask_id,
        seed: deriveSeed(seed, SEED_MASKS),
        lrAt: (s) => learningRateAt(s, params.schedule, this.guard.lrScale),
        cfg: params.update,
        ...(oldWeights ? { oldWeights } : {}),
        fuseOldLogProbs: this.updatePath === "fast",
      }),
    );
    const [advMean, advStd] = meanStd(batch.advantages);
    const epochs = result.epochs;
    const avg = (f: (e: (typeof epochs)[number]) => number) => epochs.reduce((a, e) => a + f(e), 0) / epochs.length;
    const stats: TrainStatsIn = {
      ...base,
      loss: avg((e) => e.loss),
      clipFraction: avg((e) => e.clipFraction),
      gradNorm: avg((e) => e.gradNorm),
      advMean,
      advStd,
      substitutions: built.substituted,
      lr: epochs[epochs.length - 1]!.lr,
    };
    if (!epochs.some((e) => e.applied)) {
      this.opts.logger.warn("non-finite loss or gradient: update skipped", { loss: stats.loss, gradNorm: stats.gradNorm });
      this.skippedBatches += 1;
      return { ...stats, skipped: true };
    }
    this.previous = before;
    this.version += 1;
    this.published = { version: this.version, tensors: this.publishable() };
    if (params.emaDecay > 0) {
      // The first average starts from the weights before this update (the job's starting policy).
      const avg = this.ema?.weights ?? cloneNamedTensors(before);
      this.ema = { weights: emaUpdateNamed(avg, this.current, params.emaDecay), decay: params.emaDecay, updates: (this.ema?.updates ?? 0) + 1 };
    }
    return stats;
  }

  /**
   * FinalizeWeights: the moving average, when one was kept, becomes the job's weights as a new
   * version (the trained weights become `previous`), checkpointed as the job's final weights.
   * Idempotent; `checkOnly` changes nothing.
   */
  finalizeWeights(checkOnly = false): Promise<FinalizeResult> {
    return this.exclusive(async () => {
      const about = { averagedUpdates: this.ema?.updates ?? 0, emaDecay: this.ema?.decay ?? 0 };
      if (this.finalized) return { policyVersion: this.version, averaged: this.ema !== null, alreadyFinal: true, ...about };
      if (checkOnly || !this.ema) return { policyVersion: this.version, averaged: this.ema !== null, alreadyFinal: false, ...about };
      this.previous = this.current;
      this.current = cloneNamedTensors(this.ema.weights);
      this.version += 1;
      this.published = { version: this.version, tensors: this.publishable() };
      this.finalized = true;
      await this.saveCheckpoint();
      this.opts.metrics?.policyVersion.set(this.version);
      this.opts.logger.info("final weights: the policy's moving average", { policyVersion: this.version, ...about });
      return { policyVersion: this.version, averaged: true, alreadyFinal: false, ...about };
    });
  }

  /** The guard gave up: the step's stats say "stop" and the coordinator fails the job. */
  private logGuardStop(reason: string): void {
    this.opts.logger.error("collapse guard: gave up (RLMESH_GUARD_MAX_ROLLBACKS spent or no good checkpoint); the coordinator fails the job", { reason });
  }

  /**
   * Restores weights and optimizer of checkpoint `toStep` (or the newest valid one before it) as a
   * new version, and counts and logs the rollback.
   */
  private async rollback(decision: Extract<CollapseDecision, { kind: "rollback" }>, guard: CollapseGuardState): Promise<void> {
    const { toStep } = decision;
    const ck = (await this.store.load(toStep).catch(() => null)) ?? (await this.store.loadLatest(toStep));
    if (!ck) throw new RollbackCheckpointMissingError(`collapse guard: no valid checkpoint at or before step ${toStep} to roll back to`);
    this.previous = this.current;
    const restored = splitWeights(ck.weights);
    this.current = restored.current;
    // The average goes back with the weights (none: it starts again at the next update).
    const extra = ck.extra as unknown as LearnerExtra;
    this.ema = restored.ema && extra.ema ? { weights: restored.ema, ...extra.ema } : null;
    this.optimizer = ck.optimizer;
    this.guard = guard;
    // A new version number even though the weights are old ones: rollout workers only move forward.
    this.version += 1;
    this.published = { version: this.version, tensors: this.publishable() };
    this.opts.metrics?.rollbacks.inc({ trigger: decision.trigger });
    this.opts.logger.warn("collapse guard: rolled back", { trigger: decision.trigger, reason: decision.reason, policyVersion: this.version });
  }

  private async saveCheckpoint(): Promise<string> {
    this.guard = noteCheckpoint(this.guard, this.learnerStep);
    const extra: LearnerExtra = {
      learnerStep: this.learnerStep,
      runSeed: this.runSeed,
      modelSha256: this.modelSha256,
      skippedBatches: this.skippedBatches,
      guard: this.guard,
      applied: this.applied.toJSON(),
      ...(this.ema ? { ema: { decay: this.ema.decay, updates: this.ema.updates } } : {}),
      ...(this.finalized ? { finalized: true } : {}),
    };
    const weights: NamedTensors = { ...this.current };
    if (this.previous) for (const [k, v] of Object.entries(this.previous)) weights[PREVIOUS_PREFIX + k] = v;
    if (this.ema) for (const [k, v] of Object.entries(this.ema.weights)) weights[EMA_PREFIX + k] = v;
    const data: CheckpointData = {
      step: this.learnerStep,
      policyVersion: this.version,
      weights,
      optimizer: this.optimizer,
      rngState: { runSeed: this.runSeed, learnerStep: this.learnerStep },
      extra: extra as unknown as Record<string, unknown>,
    };
    const t0 = performance.now();
    this.lastCheckpoint = await this.store.save(data);
    this.lastCheckpointStep = this.learnerStep;
    this.opts.metrics?.checkpointSeconds.observe((performance.now() - t0) / 1000);
    return this.lastCheckpoint;
  }
}

/** `given` as the fresh weights, after checking it has every weight of `model` with its shape. */
function checkedInitialWeights(model: NamedTensors, given: { tensors: NamedTensors; field: string }): NamedTensors {
  const out: NamedTensors = {};
  for (const [name, w] of Object.entries(model)) {
    const g = given.tensors[name];
    if (!g) throw new InvalidArgumentError(given.field, `has no weight ${name} of the model`);
    if (g.shape.length !== w.shape.length || g.shape.some((d, i) => d !== w.shape[i])) {
      throw new InvalidArgumentError(given.field, `weight ${name} has shape [${g.shape.join(", ")}], the model's is [${w.shape.join(", ")}]`);
    }
    out[name] = g;
  }
  return cloneNamedTensors(out);
}

/** A checkpoint's weights split into the current version's, the previous one's and the moving average. */
export function splitWeights(all: NamedTensors): { current: NamedTensors; previous: NamedTensors | null; ema: NamedTensors | null } {
  const current: NamedTensors = {};
  const previous: NamedTensors = {};
  const ema: NamedTensors = {};
  for (const [k, v] of Object.entries(all)) {
    if (k.startsWith(PREVIOUS_PREFIX)) previous[k.slice(PREVIOUS_PREFIX.length)] = v;
    else if (k.startsWith(EMA_PREFIX)) ema[k.slice(EMA_PREFIX.length)] = v;
    else current[k] = v;
  }
  return { current, previous: Object.keys(previous).length > 0 ? previous : null, ema: Object.keys(ema).length > 0 ? ema : null };
}
