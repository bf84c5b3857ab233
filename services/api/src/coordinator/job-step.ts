// One RL step of a job: generate (or take the prefetched samples), score, train, record.
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type { Job, Logger } from "@rlmesh/shared";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import { CurriculumSampler, curriculumKey, sampleBatch, stepSeed, type DrawnBatch, type Visit } from "./batch-sampler.js";
import { CollapseGuardStop } from "./collapse-guard-stop.js";
import { groupRewards, groupsToTrain, informativeGroupFraction } from "./dynamic-sampling.js";
import type { Candidate } from "./interfaces.js";
import { withWaitingNotices } from "./waiting-notice.js";
import { checkInfraFailureRate, DEFAULT_MAX_INFRA_FAILURE_RATE, describeDropped, droppedSamples } from "./infra-failures.js";
import type { RunnerDeps } from "./runner-deps.js";
import { recordStepTraces } from "./job-traces.js";
import { asInfillRows, rolloutInfill, type StepSample } from "./infill-task.js";
import { stepLr } from "./lr-decay.js";
import { recordRunSeconds } from "./run-clock.js";

/** Where a step's generated samples are kept until the step completes (for resume). */
const STEP_SAMPLES_TTL_S = 24 * 3600;

export interface StepContext {
  rows: CanonicalRow[];
  seed: number;
  spec: JobSpec;
  deps: RunnerDeps;
  signal: AbortSignal;
  log: Logger;
  /** The curriculum sampler (spec.curriculum.window > 0), else null: the plain epoch-wise shuffle. */
  sampler: CurriculumSampler | null;
  /** Seconds of this job's run so far (its steps and evals, over api restarts): spec.lr_schedule's clock. */
  runSeconds: () => number;
}

/** A step's prompts and generated samples (kept in Redis until the step completes). */
export interface Generated {
  batch: CanonicalRow[];
  /** The batch's row indices in the job's rows. */
  indices: number[];
  /** Rows the curriculum sampler passed over to draw the batch. */
  skipped: number;
  samples: StepSample[];
}

export async function generateStep(jobId: string, step: number, ctx: StepContext): Promise<Generated> {
  const { rows, seed, spec, deps, signal } = ctx;
  const size = spec.promptsPerStep * Math.max(1, spec.oversample);
  const drawn: DrawnBatch = ctx.sampler ? ctx.sampler.draw(step) : { indices: sampleBatch(rows.length, size, seed, step), skipped: 0 };
  const batch = drawn.indices.map((i) => rows[i]!);
  const samplesKey = stepSamplesKey(jobId, step);
  const cached = await deps.redis.get(samplesKey);
  if (cached) return { batch, ...drawn, samples: JSON.parse(cached) as StepSample[] };
  // Traces: the whole request is traced (it shares its parameters); runStep keeps a few.
  const params = { ...spec.decoding, seed: stepSeed(seed, step, 0x5a), ...((spec.traceSamplesPerStep ?? 0) > 0 ? { trace: true } : {}) };
  // Only this job's policy generates its samples (a worker on another job's catches up first).
  const call = { signal, requestId: `${jobId}-${step}`, policyJobId: jobId };
  const samples: StepSample[] =
    spec.task === "infill"
      ? await rolloutInfill(asInfillRows(batch), spec.groupSize, params, spec, deps, call, "train")
      : (await deps.rollout.generate(batch.map((r, i) => ({ id: String(i), text: r.prompt })), spec.groupSize, params, call)).samples;
  await deps.redis.set(samplesKey, JSON.stringify(samples), "EX", STEP_SAMPLES_TTL_S);
  return { batch, ...drawn, samples };
}

export const stepSamplesKey = (jobId: string, step: number) => `rlmesh:job:${jobId}:step:${step}:samples`;

/** Each step's curriculum visits (a hash: step → [[row, saturated 0/1], …]), for a restarted api. */
export const curriculumVisitsKey = (jobId: string) => `rlmesh:job:${jobId}:curriculum`;
/** How long a job's curriculum visits are kept after its last step (as its traces). */
const CURRICULUM_TTL_S = 14 * 24 * 3600;

/**
 * The job's curriculum sampler (null when spec.curriculum.window is 0), with the visits of the
 * steps it already ran (stored in Redis), so a restarted api draws the same batches.
 */
export async function loadCurriculumSampler(jobId: string, rows: CanonicalRow[], spec: JobSpec, deps: Pick<RunnerDeps, "redis">): Promise<CurriculumSampler | null> {
  // A job stored before JobSpec.curriculum existed has no such field: resumed, it runs without one.
  const curriculum = spec.curriculum as JobSpec["curriculum"] | undefined;
  if (!curriculum || !(curriculum.window > 0)) return null;
  const sampler = new CurriculumSampler(rows.map(curriculumKey), {
    seed: Number(spec.seed),
    size: spec.promptsPerStep * Math.max(1, spec.oversample),
    window: curriculum.window,
    explore: curriculum.explore,
    lag: spec.overlap ? 1 : 0,
  });
  const stored = await deps.redis.hgetall(curriculumVisitsKey(jobId));
  for (const [step, v] of Object.entries(stored)) {
    sampler.record(Number(step), (JSON.parse(v) as [number, number][]).map(([row, sat]) => ({ row, saturated: sat === 1 })));
  }
  return sampler;
}

/**
 * A step's visits: one per group whose every sample was scored, saturated when its rewards are all
 * equal. A group that lost samples to the infrastructure (dropped, no reward) is not a visit: the
 * missing rewards could have been the ones that differ, so it says nothing about the policy.
 */
export function stepVisits(indices: number[], scored: { promptId: string; reward: number }[], groupSize: number): Visit[] {
  const groups = new Map<string, number[]>();
  for (const { promptId, reward } of scored) groups.set(promptId, [...(groups.get(promptId) ?? []), reward]);
  return [...groups]
    .filter(([, rewards]) => rewards.length >= groupSize)
    .map(([promptId, rewards]) => ({ row: indices[Number(promptId)]!, saturated: new Set(rewards).size === 1 }));
}

/**
 * Scores, trains and records one step. `generated` is its samples (generated now, or prefetched
 * while the previous step trained); `onSamples` runs once they are in hand (starts the overlap).
 */
export async function runStep(job: Job, step: number, ctx: StepContext, generated: Promise<Generated>, onSamples: () => void): Promise<Job> {
  const { seed, spec, deps, signal, log } = ctx;
  const { store } = deps;
  const t: Record<string, number> = {};
  let t0 = performance.now();
  const emit = (message: string) => store.appendEvent(job.id, { log: { level: "warn", message } });
  // The step's LR under spec.lr_schedule, fixed at its start and recorded before its TrainStep: a
  // retried or resumed step resends the recorded one (the learner refuses other params for a step).
  const runSeconds = ctx.runSeconds();
  let lr: Awaited<ReturnType<typeof stepLr>>;
  try {
    await recordRunSeconds(deps.redis, job.id, runSeconds);
    lr = await stepLr(deps.redis, job.id, step, spec, runSeconds);
  } catch (err) {
    // Redis failed before the step took its samples: let the rollout end (its error is this
    // attempt's too) so the retry does not start a second one beside it.
    await generated.catch(() => undefined);
    throw err;
  }
  const rolloutMissing = async () => ((await deps.rollout.workers()).length === 0 ? "a rollout worker (none registered)" : null);
  const { batch, indices, skipped, samples } = await withWaitingNotices(generated, `step ${step} rollout`, rolloutMissing, emit);
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
  const executorsMissing = async () =>
    deps.rewards.executors && (await deps.rewards.executors()) === 0 ? "an executor (none is consuming the reward queue)" : null;
  const scores = await withWaitingNotices(
    deps.rewards.score(candidates, spec.limits, signal),
    `step ${step} rewards (${candidates.length} candidates)`,
    executorsMissing,
    emit,
  );
  t.reward = (performance.now() - t0) / 1000;
  if (signal.aborted) return job;

  // A candidate the infrastructure could not score has no reward: it leaves its group (told in an
  // event, counted), and too many of them fail the job rather than train on a thinned step.
  const dropped = droppedSamples(candidates, scores);
  if (dropped.length > 0) {
    for (const d of dropped) deps.metrics?.samplesDropped.inc({ reason: d.status, phase: "train" });
    log.warn("samples dropped: no reward", { step, dropped: dropped.length, of: candidates.length });
    await store.appendEvent(job.id, { log: { level: "warn", message: describeDropped(`step ${step}`, dropped, candidates.length) } });
    checkInfraFailureRate(`step ${step}`, dropped, candidates.length, deps.maxInfraFailureRate ?? DEFAULT_MAX_INFRA_FAILURE_RATE);
  }
  const scored = samples.flatMap((smp, k) => {
    const r = scores[k]!.reward;
    return r === null ? [] : [{ smp, k, reward: r }];
  });

  t0 = performance.now();
  const groups = groupRewards(scored.map(({ smp, reward }) => ({ group: smp.promptId, reward })));
  const keep = groupsToTrain(groups, spec.promptsPerStep);
  if (ctx.sampler) {
    // Stored before the step is recorded: a restarted api replays it to draw the same batches.
    const visits = stepVisits(
      indices,
      scored.map(({ smp, reward }) => ({ promptId: smp.promptId, reward })),
      spec.groupSize,
    );
    const key = curriculumVisitsKey(job.id);
    await deps.redis
      .multi()
      .hset(key, String(step), JSON.stringify(visits.map((v) => [v.row, v.saturated ? 1 : 0])))
      .expire(key, CURRICULUM_TTL_S)
      .exec();
    ctx.sampler.record(step, visits);
  }
  const learnerMissing = async () => (deps.learner.unavailable ? deps.learner.unavailable() : null);
  const trainCall = deps.learner.trainStep(
    {
      jobId: job.id,
      step,
      seed: stepSeed(seed, step, 0x7e),
      params: lr ? { ...spec.grpo, lr: lr.lr } : spec.grpo,
      samples: scored
        .filter(({ smp }) => keep.has(smp.promptId))
        .map(({ smp: s, reward }) => ({
          promptId: `${step}-${s.promptId}`,
          promptTokenIds: s.promptTokenIds,
          responseTokenIds: s.tokenIds,
          reward,
          policyVersion: s.policyVersion,
          policyJobId: s.policyJobId,
          // Infill: the program's tokens after the middle (the learner scores only the middle).
          suffixTokenIds: s.suffixTokenIds ?? [],
        })),
    },
    signal,
  );
  const trained = await withWaitingNotices(trainCall, `step ${step} TrainStep`, learnerMissing, emit);
  t.train = (performance.now() - t0) / 1000 - trained.pushSeconds;
  t.push = trained.pushSeconds;

  const rewardSum = scored.reduce((a, s) => a + s.reward, 0);
  const rewardMean = rewardSum / Math.max(1, scored.length);
  const solved = new Set(scored.filter((s) => s.reward > 0).map((s) => candidates[s.k]!.row.task_id));
  const passRateStep = solved.size / batch.length;
  await recordStepTraces(job.id, step, spec, batch, scored, deps, log);
  const informativeFraction = informativeGroupFraction(groups);
  const stepEvent = {
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
      promptsSkipped: skipped,
    },
  };
  // The job's own mean over every scored candidate so far (Job.reward_mean is this step's).
  const before = Number(job.candidatesScored ?? 0);
  const candidatesScored = before + scored.length;
  const jobRewardMean = candidatesScored > 0 ? (Number(job.jobRewardMean ?? 0) * before + rewardSum) / candidatesScored : 0;
  const progress = { step, policyVersion: trained.policyVersion, rewardMean, passRate: passRateStep, jobRewardMean, candidatesScored };
  const stop = trained.stats?.guardAction === "stop" ? new CollapseGuardStop(step, `step reward: ${trained.stats.guardReason}`) : null;
  // The step's event and the job's progress go in together, once: a retried step whose record
  // went through (Redis died before its reply) is not recorded twice.
  const recorded = await store.recordStep(job.id, stepEvent, progress);
  job = recorded.job;
  // A stop is recorded with the step, so a restarted api does not resume the job.
  if (stop) job = await store.transition(job.id, "JOB_STATE_FAILED", stop.message, { error: stop.message });
  await deps.redis.del(stepSamplesKey(job.id, step));
  deps.metrics?.observeStep(step, rewardMean, t);
  log.info("step", { step, rewardMean, policyVersion: trained.policyVersion, lr: trained.stats?.lr, ...t });
  if (stop) throw stop;
  return job;
}
