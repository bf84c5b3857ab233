import type { Redis } from "ioredis";
import { loadDataset, testCount, type CanonicalRow, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { evalSplitName, PRIMARY_EVAL_SPLIT } from "@rlmesh/shared/eval-splits";
import { InvalidArgumentError, type DatasetSpec, type Job, type Logger, type Sample } from "@rlmesh/shared";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import type { JobStore } from "../job-store.js";
import type { ApiMetrics } from "../api-metrics.js";
import { sampleBatch, stepSeed } from "./batch-sampler.js";
import type { RolloutPool } from "./rollout-pool.js";
import type { Candidate, LearnerClient, RewardScorer } from "./interfaces.js";
import { passRate, type PassRate } from "./pass-at-1.js";

/** Where a step's generated samples are kept until the step completes (for resume). */
const STEP_SAMPLES_TTL_S = 24 * 3600;

export interface RunnerDeps {
  store: JobStore;
  redis: Redis;
  rollout: RolloutPool;
  rewards: RewardScorer;
  learner: LearnerClient;
  logger: Logger;
  metrics?: ApiMetrics;
}

/** Rejects a job whose datasets do not load: INVALID_ARGUMENT naming the row and field. */
export function validateDatasets(spec: JobSpec): void {
  for (const [field, ds] of [
    ["spec.dataset", spec.dataset] as const,
    ["spec.eval_dataset", spec.evalDataset] as const,
    ...spec.extraEvalDatasets.map((d, i) => [`spec.extra_eval_datasets[${i}]`, d] as const),
  ]) {
    if (!ds.path) continue;
    let rows: CanonicalRow[];
    try {
      rows = loadRows(ds);
    } catch (err) {
      throw new InvalidArgumentError(`${field}.path`, (err as Error).message);
    }
    if (rows.length === 0) throw new InvalidArgumentError(`${field}.path`, `${ds.path} has no rows after filters`);
  }
}

/** Loads a dataset spec into canonical rows, applying its filters. */
export function loadRows(spec: DatasetSpec): CanonicalRow[] {
  let rows = loadDataset(spec.path, spec.format as DatasetFormat);
  if (spec.minTests > 0) rows = rows.filter((r) => testCount(r.tests) >= spec.minTests);
  if (spec.dedupe) {
    const seen = new Set<string>();
    rows = rows.filter((r) => !seen.has(r.prompt) && (seen.add(r.prompt), true));
  }
  if (spec.limit > 0) rows = rows.slice(0, spec.limit);
  return rows;
}

/**
 * Drives one RL job: per step, sample prompts → Generate on the rollout workers → score every
 * candidate on the reward queue → TrainStep (the learner pushes the new weights) → record.
 * The step counter and each step's samples live in Redis, so a restarted api resumes from the
 * last completed step and re-scores the same candidates under the same reward job ids.
 */
export async function runJob(job: Job, deps: RunnerDeps, signal: AbortSignal): Promise<void> {
  const { store, logger } = deps;
  const spec = job.spec as JobSpec;
  const log = logger.child({ job: job.id });
  const rows = loadRows(spec.dataset);
  if (rows.length === 0) throw new Error(`dataset ${spec.dataset.path} has no rows after filters`);
  const evalRows = spec.evalDataset.path ? loadRows(spec.evalDataset) : [];
  const seed = Number(spec.seed);

  if (job.state === "JOB_STATE_QUEUED") job = await store.transition(job.id, "JOB_STATE_RUNNING", "started");
  else await store.appendEvent(job.id, { log: { level: "info", message: `resumed after step ${job.step}` } });

  const extraEvals = spec.extraEvalDatasets.map((d) => ({ split: evalSplitName(d.path), rows: loadRows(d) }));
  const evaluate = async (step: number): Promise<PassRate> => {
    const r = await evalPassAt1(evalRows, job.id, step, spec, deps, signal);
    await store.appendEvent(job.id, {
      eval: {
        step,
        passAt1: r.passAt1,
        n: r.n,
        split: PRIMARY_EVAL_SPLIT,
        mode: "greedy",
        responses: r.n,
        ciLow: r.ciLow,
        ciHigh: r.ciHigh,
      },
    });
    await store.update(job.id, { evalPassAt1: r.passAt1 });
    deps.metrics?.evalPassAt1.set(r.passAt1);
    log.info("eval", { step, passAt1: r.passAt1, n: r.n });
    await reportToGuard(step, r);
    // The other lines: greedy on each extra set, then sampled (eval_samples) on every set.
    const record = async (split: string, rows: CanonicalRow[], samples: number) => {
      if (signal.aborted) return;
      const e = await evalPassAt1(rows, job.id, step, spec, deps, signal, { split, samples });
      const mode = samples > 0 ? "sampled" : "greedy";
      await store.appendEvent(job.id, {
        eval: { step, passAt1: e.passAt1, n: rows.length, split, mode, responses: e.n, ciLow: e.ciLow, ciHigh: e.ciHigh },
      });
    };
    for (const line of [{ split: PRIMARY_EVAL_SPLIT, rows: evalRows }, ...extraEvals]) {
      if (line.split !== PRIMARY_EVAL_SPLIT) await record(line.split, line.rows, 0);
      if (spec.evalSamples > 0) await record(line.split, line.rows, spec.evalSamples);
    }
    return r;
  };
  // The primary greedy line feeds the learner's collapse guard; a rollback is told in the events.
  // A stop fails the job at once: recorded before anything else (a restarted api does not resume
  // it; the job's state event stays its last event), then thrown.
  const reportToGuard = async (step: number, r: PassRate): Promise<void> => {
    if (!deps.learner.reportEval || r.n === 0) return;
    let g: Awaited<ReturnType<NonNullable<LearnerClient["reportEval"]>>>;
    try {
      g = await deps.learner.reportEval({ jobId: job.id, step, passAt1: r.passAt1, n: r.n }, signal);
    } catch (err) {
      if (signal.aborted) return;
      log.warn("ReportEval failed; the collapse guard misses this eval", { step, err: (err as Error).message });
      return;
    }
    if (!g.guardAction) return;
    await store.appendEvent(job.id, {
      log: { level: "warn", message: `collapse guard (held-out): ${g.guardAction}: ${g.guardReason}; policy v${g.policyVersion}` },
    });
    if (g.guardAction !== "stop") return;
    const stop = new CollapseGuardStop(step, `held-out: ${g.guardReason}`);
    await store.transition(job.id, "JOB_STATE_FAILED", stop.message, { error: stop.message });
    throw stop;
  };
  const workers = await deps.rollout.workers();
  if (workers.length === 0) {
    await store.appendEvent(job.id, { log: { level: "warn", message: "waiting for a rollout worker to register" } });
    await deps.rollout.waitForWorkers(1, Infinity, signal);
  }
  if (evalRows.length > 0 && job.step === 0) await evaluate(0);

  const started = performance.now();
  const firstStep = job.step + 1;
  let lastStep = spec.steps;
  const ctx: StepContext = { rows, seed, spec, deps, signal, log };
  // Overlap: step k+1's rollout starts as soon as step k's samples exist and runs while step k
  // is scored and trained, so its samples are one policy version behind (the learner's
  // max_staleness admits that; old log-probs come from the previous version).
  const prefetch: { next: { step: number; samples: Promise<Generated> } | null } = { next: null };
  const startPrefetch = (next: number) => {
    if (!spec.overlap || next > spec.steps || signal.aborted) return;
    const samples = generateStep(job.id, next, ctx);
    samples.catch(() => undefined); // awaited (and its error retried) when step `next` runs
    prefetch.next = { step: next, samples };
  };
  // A prefetched rollout that will not be trained: wait for it (its workers are busy until then)
  // and drop its kept samples.
  const dropPrefetch = async () => {
    const p = prefetch.next;
    prefetch.next = null;
    if (!p) return;
    await p.samples.catch(() => undefined);
    await deps.redis.del(stepSamplesKey(job.id, p.step)).catch(() => undefined);
  };
  // However the loop ends (done, time budget, abort, a failed step or eval), a prefetched
  // rollout that will not be trained is dropped before anything else runs.
  try {
    for (let step = job.step + 1; step <= spec.steps; step++) {
      if (signal.aborted) return;
      if (spec.maxMinutes > 0 && (performance.now() - started) / 60_000 >= spec.maxMinutes && step > firstStep) {
        lastStep = step - 1;
        await store.appendEvent(job.id, {
          log: {
            level: "info",
            message: `time budget of ${spec.maxMinutes} min reached after step ${lastStep}; stopping before step ${step}`,
          },
        });
        break;
      }
      // A step is idempotent (its samples are kept in Redis, reward job ids and TrainStep are keyed
      // by (job, step)), so a transient failure — a worker, the learner or Redis restarting — is
      // retried with backoff before the job fails.
      for (let attempt = 1; ; attempt++) {
        try {
          const pre = prefetch.next;
          prefetch.next = null;
          const samples = pre && pre.step === step ? pre.samples : generateStep(job.id, step, ctx);
          job = await runStep(job, step, ctx, samples, () => startPrefetch(step + 1));
          break;
        } catch (err) {
          if (signal.aborted || attempt >= STEP_ATTEMPTS || !isTransient(err)) throw err;
          const waitMs = Math.min(30_000, 1000 * 2 ** (attempt - 1));
          log.warn("step failed, retrying", { step, attempt, waitMs, err: (err as Error).message });
          await store
            .appendEvent(job.id, {
              log: {
                level: "warn",
                message: `step ${step} attempt ${attempt} failed (${(err as Error).message}); retrying in ${waitMs / 1000} s`,
              },
            })
            .catch(() => undefined);
          await new Promise((r) => setTimeout(r, waitMs));
        }
      }
      if (signal.aborted) return;
      if (evalRows.length > 0 && spec.evalInterval > 0 && step % spec.evalInterval === 0 && step !== spec.steps) await evaluate(step);
      // The job's step counter now says `step`; a time-budget stop right after it evaluates `step`.
      lastStep = step;
    }
  } finally {
    await dropPrefetch();
  }
  if (signal.aborted) return;
  if (evalRows.length > 0) await evaluate(lastStep);
  await store.transition(
    job.id,
    "JOB_STATE_SUCCEEDED",
    lastStep === spec.steps ? "all steps done" : `time budget reached after step ${lastStep}`,
  );
}

/** Attempts per step before the job fails. */
export const STEP_ATTEMPTS = 6;

/**
 * The learner's collapse guard gave up (its rollbacks are spent, or no good checkpoint is left):
 * the job fails with the guard's reason instead of training a collapsing policy on.
 */
export class CollapseGuardStop extends Error {
  constructor(
    readonly step: number,
    reason: string,
  ) {
    super(`collapse guard stopped the job at step ${step} (${reason})`);
    this.name = "CollapseGuardStop";
  }
}

/** Errors worth retrying a step for: anything but a bad request, a cancellation or a guard stop. */
function isTransient(err: unknown): boolean {
  if (err instanceof InvalidArgumentError || err instanceof CollapseGuardStop) return false;
  if (err instanceof Error && err.name === "AbortError") return false;
  const code = (err as { code?: unknown }).code;
  // gRPC INVALID_ARGUMENT (3), FAILED_PRECONDITION (9) and UNIMPLEMENTED (12) will not heal.
  return !(typeof code === "number" && [3, 9, 12].includes(code));
}

interface StepContext {
  rows: CanonicalRow[];
  seed: number;
  spec: JobSpec;
  deps: RunnerDeps;
  signal: AbortSignal;
  log: Logger;
}

/** A step's prompts and generated samples (kept in Redis until the step completes). */
interface Generated {
  batch: CanonicalRow[];
  samples: Sample[];
}

async function generateStep(jobId: string, step: number, ctx: StepContext): Promise<Generated> {
  const { rows, seed, spec, deps, signal } = ctx;
  const idx = sampleBatch(rows.length, spec.promptsPerStep * Math.max(1, spec.oversample), seed, step);
  const batch = idx.map((i) => rows[i]!);
  const samplesKey = stepSamplesKey(jobId, step);
  const cached = await deps.redis.get(samplesKey);
  if (cached) return { batch, samples: JSON.parse(cached) as Sample[] };
  const res = await deps.rollout.generate(
    batch.map((r, i) => ({ id: String(i), text: r.prompt })),
    spec.groupSize,
    { ...spec.decoding, seed: stepSeed(seed, step, 0x5a) },
    { signal, requestId: `${jobId}-${step}` },
  );
  await deps.redis.set(samplesKey, JSON.stringify(res.samples), "EX", STEP_SAMPLES_TTL_S);
  return { batch, samples: res.samples };
}

const stepSamplesKey = (jobId: string, step: number) => `rlmesh:job:${jobId}:step:${step}:samples`;

/**
 * Scores, trains and records one step. `generated` is its samples (generated now, or prefetched
 * while the previous step trained); `onSamples` runs once they are in hand (starts the overlap).
 */
async function runStep(job: Job, step: number, ctx: StepContext, generated: Promise<Generated>, onSamples: () => void): Promise<Job> {
  const { seed, spec, deps, signal, log } = ctx;
  const { store } = deps;
  const t: Record<string, number> = {};
  let t0 = performance.now();
  const { batch, samples } = await generated;
  // With overlap, the rollout ran (partly) during the previous step: count only the wait here.
  t.rollout = (performance.now() - t0) / 1000;
  onSamples();

  t0 = performance.now();
  const candidates: Candidate[] = samples.map((s, k) => ({
    jobId: job.id,
    step,
    sampleIndex: k,
    row: batch[Number(s.promptId)]!,
    response: s.text,
  }));
  const scores = await deps.rewards.score(candidates, spec.limits, signal);
  t.reward = (performance.now() - t0) / 1000;
  if (signal.aborted) return job;

  t0 = performance.now();
  const groups = groupRewards(samples.map((smp, k) => ({ group: smp.promptId, reward: scores[k]!.reward })));
  const keep = groupsToTrain(groups, spec.promptsPerStep);
  const trained = await deps.learner.trainStep(
    {
      jobId: job.id,
      step,
      seed: stepSeed(seed, step, 0x7e),
      params: spec.grpo,
      samples: samples
        .map((s, k) => ({
          promptId: `${step}-${s.promptId}`,
          promptTokenIds: s.promptTokenIds,
          responseTokenIds: s.tokenIds,
          reward: scores[k]!.reward,
          policyVersion: s.policyVersion,
        }))
        .filter((_, k) => keep.has(samples[k]!.promptId)),
    },
    signal,
  );
  t.train = (performance.now() - t0) / 1000 - trained.pushSeconds;
  t.push = trained.pushSeconds;

  const rewardMean = scores.reduce((a, s) => a + s.reward, 0) / Math.max(1, scores.length);
  const solved = new Set(candidates.filter((_, k) => scores[k]!.reward > 0).map((c) => c.row.task_id));
  const passRateStep = solved.size / batch.length;
  const informativeFraction = informativeGroupFraction(groups);
  await store.appendEvent(job.id, {
    step: {
      step,
      rewardMean,
      passRate: passRateStep,
      timings: { seconds: t },
      policyVersion: trained.policyVersion,
      train: trained.stats,
      candidates: samples.length,
      informativeFraction,
      samplesPolicyVersion: Math.min(...samples.map((x) => Number(x.policyVersion))),
      trainedGroups: keep.size,
    },
  });
  const progress = { step, policyVersion: trained.policyVersion, rewardMean, passRate: passRateStep };
  const stop = trained.stats?.guardAction === "stop" ? new CollapseGuardStop(step, `step reward: ${trained.stats.guardReason}`) : null;
  // A stop is recorded with the step, so a restarted api does not resume the job.
  job = stop
    ? await store.transition(job.id, "JOB_STATE_FAILED", stop.message, { ...progress, error: stop.message })
    : await store.update(job.id, progress);
  await deps.redis.del(stepSamplesKey(job.id, step));
  deps.metrics?.observeStep(step, rewardMean, t);
  log.info("step", { step, rewardMean, policyVersion: trained.policyVersion, ...t });
  if (stop) throw stop;
  return job;
}

/** The distinct rewards of each group (same prompt), groups in first-seen order. */
export function groupRewards(items: { group: string; reward: number }[]): Map<string, Set<number>> {
  const groups = new Map<string, Set<number>>();
  for (const it of items) groups.set(it.group, (groups.get(it.group) ?? new Set<number>()).add(it.reward));
  return groups;
}

/** A group is informative for GRPO when its rewards are not all equal. */
const informative = (rewards: Set<number>) => rewards.size > 1;

/**
 * Dynamic sampling: which groups (prompt ids) go to the learner — at most `max`, informative
 * groups first, each kind in rollout order. Without oversampling every group is kept (the
 * learner substitutes uninformative ones itself).
 */
export function groupsToTrain(groups: Map<string, Set<number>>, max: number): Set<string> {
  const order = [...groups.keys()];
  const first = order.filter((g) => informative(groups.get(g)!));
  const rest = order.filter((g) => !informative(groups.get(g)!));
  return new Set([...first, ...rest].slice(0, max));
}

/** Fraction of groups whose rewards are not all equal. */
export function informativeGroupFraction(groups: Map<string, Set<number>>): number {
  if (groups.size === 0) return 0;
  return [...groups.values()].filter(informative).length / groups.size;
}

/**
 * Held-out pass@1 with the policy the rollout workers serve now: greedy (one response per prompt)
 * or, with `samples` k, the mean reward of k sampled responses per prompt at the job's decoding
 * temperature (its interval is over the n·k responses, so it is a little narrow).
 */
export async function evalPassAt1(
  rows: CanonicalRow[],
  jobId: string,
  step: number,
  spec: JobSpec,
  deps: RunnerDeps,
  signal: AbortSignal,
  opts: { split?: string; samples?: number } = {},
): Promise<PassRate> {
  if (rows.length === 0) return passRate(0, 0);
  const k = opts.samples ?? 0;
  const tag = `${opts.split ?? PRIMARY_EVAL_SPLIT}${k > 0 ? `-s${k}` : ""}`;
  const decoding =
    k > 0
      ? { ...spec.decoding, seed: stepSeed(Number(spec.seed), step, 0xe7) }
      : { ...spec.decoding, temperature: 0, topP: 1, topK: 0, seed: 1 };
  const res = await deps.rollout.generate(
    rows.map((r, i) => ({ id: String(i), text: r.prompt })),
    Math.max(1, k),
    decoding,
    { signal, requestId: `${jobId}-eval-${tag}-${step}` },
  );
  const candidates: Candidate[] = res.samples.map((s, i) => ({
    jobId: `${jobId}-eval-${tag}`,
    step,
    sampleIndex: i,
    row: rows[Number(s.promptId)]!,
    response: s.text,
  }));
  const scores = await deps.rewards.score(candidates, spec.limits, signal);
  return passRate(scores.filter((s) => s.reward > 0).length, candidates.length);
}
