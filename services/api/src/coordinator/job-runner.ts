import { evalSplitName } from "@rlmesh/shared/eval-splits";
import { isRedisUnavailable, type Job } from "@rlmesh/shared";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import { finalizeJobWeights, jobEvaluator, jobFinalized } from "./job-eval.js";
import { startOnLearner } from "./job-start.js";
import { loadJobRows } from "./job-datasets.js";
import { generateStep, loadCurriculumSampler, runStep, stepSamplesKey, type Generated, type StepContext } from "./job-step.js";
import { recordedRunSeconds } from "./run-clock.js";
import type { RunnerDeps } from "./runner-deps.js";
import { withWaitingNotices } from "./waiting-notice.js";
import { TERMINAL_STATES } from "../job-store.js";
import { isTransient, REDIS_OUTAGE_LIMIT_MS, REDIS_RETRY_MS, STEP_ATTEMPTS, stepRetryDelayMs } from "./step-retry.js";

/**
 * Drives one RL job: starts it on the learner (its own model, versions from 0), then per step, sample prompts → Generate on the rollout workers → score every
 * candidate on the reward queue → TrainStep (the learner pushes the new weights) → record.
 * The step counter and each step's samples live in Redis, so a restarted api resumes from the
 * last completed step and re-scores the same candidates under the same reward job ids.
 */
export async function runJob(job: Job, deps: RunnerDeps, signal: AbortSignal): Promise<void> {
  const { store, logger } = deps;
  const spec = job.spec as JobSpec;
  const log = logger.child({ job: job.id });
  // Infill jobs (spec.task "infill") get infilling rows: a whole-line middle cut from each reference.
  const rows = loadJobRows(spec.dataset, spec);
  if (rows.length === 0) throw new Error(`dataset ${spec.dataset.path} has no rows after filters`);
  const evalRows = spec.evalDataset.path ? loadJobRows(spec.evalDataset, spec) : [];
  const seed = Number(spec.seed);

  if (job.state === "JOB_STATE_QUEUED") job = await store.transition(job.id, "JOB_STATE_RUNNING", "started");
  else {
    // An api that died between recording a step's event and its step counter: the step is done
    // (its event is in the log), so the counter catches up instead of the step running twice.
    const tail = await store.readEvents(job.id, Math.max(0, Number(job.eventCount) - 50));
    const last = tail.filter((e) => e.step).at(-1)?.step;
    if (last && Number(last.step) > job.step) {
      job = await store.update(job.id, { step: Number(last.step), policyVersion: last.policyVersion, rewardMean: last.rewardMean, passRate: last.passRate });
      await deps.redis.del(stepSamplesKey(job.id, job.step));
    }
    await store.appendEvent(job.id, { log: { level: "info", message: `resumed after step ${job.step}` } });
  }

  const extraEvals = spec.extraEvalDatasets.map((d) => ({ split: evalSplitName(d.path), rows: loadJobRows(d, spec) }));
  const evaluate = jobEvaluator({ jobId: job.id, spec, deps, signal, log, evalRows, extraEvals });
  const emit = (message: string) => store.appendEvent(job.id, { log: { level: "warn", message } });
  const workers = await deps.rollout.workers();
  if (workers.length === 0) {
    await store.appendEvent(job.id, { log: { level: "warn", message: "waiting for a rollout worker to register" } });
    await withWaitingNotices(deps.rollout.waitForWorkers(1, Infinity, signal), "the job's start", async () => "a rollout worker (none registered)", emit);
  }
  // The learner trains this job from here on: its model at version 0 (or its own checkpoints),
  // on every rollout worker before the first rollout and the step-0 eval.
  await withWaitingNotices(startOnLearner(job, spec, rows, deps, signal), "StartJob", async () => (deps.learner.unavailable ? deps.learner.unavailable() : null), emit);
  if (evalRows.length > 0 && job.step === 0) await evaluate(0);

  // The run clock (budget, LR decay) goes on from the run seconds a previous api recorded.
  const secondsBefore = await recordedRunSeconds(deps.redis, job.id);
  const started = performance.now();
  const firstStep = job.step + 1;
  let lastStep = spec.steps;
  // An api restarted after FinalizeWeights: training is over (the learner takes no more steps);
  // what is left is the final eval.
  const trainingDone = job.step > 0 && (await jobFinalized(spec, deps, job.id, signal));
  if (trainingDone) lastStep = job.step;
  const ctx: StepContext = {
    rows,
    seed,
    spec,
    deps,
    signal,
    log,
    sampler: await loadCurriculumSampler(job.id, rows, spec, deps),
    runSeconds: () => secondsBefore + (performance.now() - started) / 1000,
  };
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
    for (let step = job.step + 1; !trainingDone && step <= spec.steps; step++) {
      if (signal.aborted) return;
      // The budget counts the whole run: after an api restart it goes on from the recorded run seconds.
      if (spec.maxMinutes > 0 && ctx.runSeconds() / 60 >= spec.maxMinutes && step > firstStep) {
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
      // A Redis outage does not use up the step's attempts: the step waits for Redis (up to
      // REDIS_OUTAGE_LIMIT_MS), retrying every few seconds.
      let redisDownSince = 0;
      let retried = false;
      for (let attempt = 1; ; attempt++) {
        try {
          if (retried) {
            // The failed attempt may have recorded the step before it failed (Redis died before
            // the reply): then it is done — or the job ended meanwhile (a cancel, a guard stop).
            const stored = await store.get(job.id);
            if (stored && TERMINAL_STATES.has(stored.state)) return;
            if (stored && Number(stored.step) >= step) {
              job = stored;
              break;
            }
          }
          const pre = prefetch.next;
          prefetch.next = null;
          const samples = pre && pre.step === step ? pre.samples : generateStep(job.id, step, ctx);
          // runStep awaits it; a step that fails first must not leave its rejection unhandled (that ends the api).
          samples.catch(() => undefined);
          job = await runStep(job, step, ctx, samples, () => startPrefetch(step + 1));
          break;
        } catch (err) {
          if (signal.aborted || !isTransient(err)) throw err;
          retried = true;
          if (isRedisUnavailable(err)) {
            redisDownSince ||= Date.now();
            if (Date.now() - redisDownSince < REDIS_OUTAGE_LIMIT_MS) {
              attempt--;
              log.warn("Redis unavailable, retrying the step", { step, downSeconds: Math.round((Date.now() - redisDownSince) / 1000) });
              await new Promise((r) => setTimeout(r, REDIS_RETRY_MS));
              continue;
            }
          } else {
            redisDownSince = 0;
          }
          if (attempt >= STEP_ATTEMPTS) throw err;
          const waitMs = stepRetryDelayMs(attempt);
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
  const final = await finalizeJobWeights({ jobId: job.id, spec, deps, signal, log, evalRows, extraEvals }, lastStep);
  if (evalRows.length > 0) await evaluate(lastStep, { final });
  await store.transition(
    job.id,
    "JOB_STATE_SUCCEEDED",
    lastStep === spec.steps ? "all steps done" : `time budget reached after step ${lastStep}`,
  );
}

