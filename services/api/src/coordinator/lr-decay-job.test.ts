// spec.lr_schedule in a running job, against a real Redis (job state, events, the recorded step
// LRs), with the rollout pool, the reward queue and the learner faked at their seams: each step's
// TrainStep carries grpo.lr × the decay at the run's progress, recorded before the call, so a
// retried step and a step resumed by a restarted api resend the recorded LR (the real learner
// refuses a replayed step with other params: FAILED_PRECONDITION; the fake here does the same).
import { test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { createLogger, type Job, type JobSpecIn, type TrainStepRequestIn, type TrainStepResponse } from "@rlmesh/shared";
import { normalizeSpec, type NormalizedJobSpec } from "../job-spec.js";
import { JobStore } from "../job-store.js";
import { Coordinator } from "./coordinator.js";
import { fakeRollout, runJobToEnd, runToEnd, runnerTestbed } from "./testing/runner-testbed.js";
import type { LearnerClient, RewardScorer } from "./interfaces.js";
import { lrDecayFactor, stepLrKey, type StepLr } from "./lr-decay.js";
import { runSecondsKey } from "./run-clock.js";

const bed = runnerTestbed("lr-decay-job-test");
const { dir, dataset } = bed;
const rollout = fakeRollout();
const rewards: RewardScorer = {
  score: async (cands) => cands.map((c) => ({ reward: c.sampleIndex % 2, status: "ok" })),
  purge: async () => 0,
};
const BASE_LR = 2e-4;
const STEP_MS = 150;

interface Attempt {
  step: number;
  lr: number | undefined;
  atMs: number;
}

/**
 * A learner that keeps every TrainStep attempt, applies a step once (its params remembered, as the
 * real learner's applied-steps record), refuses a replay with other params like the real one, and
 * on `hook(step, attempt)` can lose the reply (UNAVAILABLE after applying) or hang until aborted.
 */
function learner(hook: (step: number, attempt: number) => "lose-reply" | "hang" | null): LearnerClient & { attempts: Attempt[] } {
  const attempts: Attempt[] = [];
  const applied = new Map<number, { params: string; version: number }>();
  let version = 0;
  const t0 = Date.now();
  return {
    attempts,
    startJob: async (req) => ({
      jobId: req.jobId ?? "",
      policyVersion: version,
      resumed: version > 0,
      modelName: "fake",
      initSource: "model_dir",
      pushedTo: ["w0"],
      pushFailed: [],
    }),
    trainStep: async (req: TrainStepRequestIn, signal?: AbortSignal) => {
      const step = Number(req.step);
      const n = attempts.filter((a) => a.step === step).length + 1;
      attempts.push({
        step,
        lr: req.params?.lr === undefined || req.params.lr === null ? undefined : Number(req.params.lr),
        atMs: Date.now() - t0,
      });
      const params = JSON.stringify(req.params ?? null);
      const before = applied.get(step);
      if (before && before.params !== params) {
        throw Object.assign(new Error(`step ${step} was already applied with different samples/params/seed`), {
          code: status.FAILED_PRECONDITION,
        });
      }
      const action = hook(step, n);
      if (action === "hang") {
        await new Promise<never>((_, reject) =>
          signal?.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" })), { once: true }),
        );
      }
      await new Promise((r) => setTimeout(r, STEP_MS));
      if (!before) applied.set(step, { params, version: ++version });
      const v = applied.get(step)!.version;
      if (action === "lose-reply") throw Object.assign(new Error("connection reset: the reply was lost"), { code: status.UNAVAILABLE });
      return {
        policyVersion: v,
        stats: { numSamples: req.samples?.length ?? 0, lr: Number(req.params?.lr ?? 0), replayed: Boolean(before) },
        pushSeconds: 0,
      } as unknown as TrainStepResponse;
    },
  };
}

/** The decay of the timed jobs: from the start of the run down to 0.1 × grpo.lr. */
const COSINE = { decay: "cosine", decayStart: 0, minRatio: 0.1 } as const;

/** A small job on the testbed's dataset at grpo.lr BASE_LR, with `more`. */
const spec = (more: Partial<JobSpecIn>): NormalizedJobSpec =>
  normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, grpo: { lr: BASE_LR }, ...more });

/** A job with no step cap that ends by its time budget, so its progress is the clock's. */
const timedSpec = (maxMinutes: number) => spec({ steps: 1_000_000, maxMinutes, lrSchedule: COSINE });

/** The coordinator's dependencies with learner `l` and a fresh JobStore. */
const depsWith = (l: LearnerClient) => ({
  store: new JobStore(bed.conn),
  redis: bed.conn,
  rollout,
  rewards,
  learner: l,
  logger: createLogger("api-test", { level: "error" }),
});

/** A second api (Coordinator) takes the job over and runs it to its end. */
const resumeToEnd = async (deps: ReturnType<typeof depsWith>, stopped: Job) =>
  (await runToEnd(deps.store, new Coordinator(deps), stopped, 1200)).job;

const recordedLrs = async (jobId: string) =>
  new Map(Object.entries(await bed.conn.hgetall(stepLrKey(jobId))).map(([k, v]) => [Number(k), JSON.parse(v) as StepLr]));

test("a step retried after a lost TrainStep reply resends the LR recorded at its start, not one of the later clock", async () => {
  const l = learner((step, n) => (step === 2 && n === 1 ? "lose-reply" : null));
  const deps = depsWith(l);
  const { store } = deps;
  // A 6 s budget: the retry waits 1 s (step-retry's first backoff), a sixth of the run.
  const { job, events } = await runJobToEnd(store, new Coordinator(deps), timedSpec(0.1), 1200);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  const tries = l.attempts.filter((a) => a.step === 2);
  assert.equal(tries.length, 2, "step 2 was retried once");
  assert.ok(tries[1]!.atMs - tries[0]!.atMs >= 1000, "the retry came at least a second later");
  assert.equal(tries[1]!.lr, tries[0]!.lr, "the retry resent the first attempt's LR");
  const recorded = await recordedLrs(job.id);
  const r2 = recorded.get(2)!;
  assert.equal(tries[0]!.lr, r2.lr);
  assert.ok(r2.progress > 0 && r2.progress < 0.5, `step 2 started early in the run (progress ${r2.progress})`);
  // Recomputed at the retry, a second later, the LR would have been lower: the record mattered.
  const later = lrDecayFactor(r2.progress + 1 / 6, COSINE) * BASE_LR;
  assert.ok(later < r2.lr * 0.999, `a recomputed LR ${later} differs from the recorded ${r2.lr}`);
  // Each step's LR is grpo.lr × the factor at its recorded progress, falls over the run, and is in its step event.
  const steps = events.filter((e) => e.step).map((e) => e.step!);
  assert.ok(steps.length >= 4, `${steps.length} steps in the budget`);
  let prev = Infinity;
  for (const s of steps) {
    const r = recorded.get(Number(s.step))!;
    assert.ok(Math.abs(r.lr - BASE_LR * lrDecayFactor(r.progress, COSINE)) < 1e-18, `step ${s.step}`);
    assert.equal(s.train?.lr, r.lr, `step ${s.step}'s event carries its LR`);
    assert.ok(r.lr <= prev, `step ${s.step}: LR ${r.lr} after ${prev}`);
    prev = r.lr;
  }
  assert.ok(prev < BASE_LR * 0.8, `the last step's LR ${prev} decayed`);
});

/** Starts `s` under a first api and stops that api once step `step` has reached the learner (it stays in flight); the created job. */
async function stopWithStepInFlight(deps: ReturnType<typeof depsWith>, l: ReturnType<typeof learner>, s: Parameters<JobStore["create"]>[0], step: number): Promise<Job> {
  const created = await deps.store.create(s);
  const first = new Coordinator(deps);
  first.start(created);
  for (let i = 0; i < 800 && !l.attempts.some((a) => a.step === step); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(
    l.attempts.some((a) => a.step === step),
    `step ${step} reached the learner`,
  );
  await first.stop();
  return created;
}

test("a step resumed by a restarted api resends its recorded LR, and the run's clock goes on from the recorded seconds", async () => {
  const l = learner((step, n) => (step === 3 && n === 1 ? "hang" : null));
  const deps = depsWith(l);
  const { store } = deps;
  const created = await stopWithStepInFlight(deps, l, timedSpec(0.1), 3); // the api goes away with step 3 in flight
  const stopped = (await store.get(created.id)) as Job;
  assert.equal(stopped.state, "JOB_STATE_RUNNING");
  assert.equal(Number(stopped.step), 2);
  await new Promise((r) => setTimeout(r, 1000));

  const job = await resumeToEnd(deps, stopped);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  const tries = l.attempts.filter((a) => a.step === 3);
  assert.equal(tries.length, 2, "step 3: the lost attempt and the resumed one");
  assert.equal(tries[1]!.lr, tries[0]!.lr, "the resumed step resent the recorded LR");
  const recorded = await recordedLrs(created.id);
  assert.equal(recorded.get(3)!.lr, tries[0]!.lr);
  // The restarted api's clock starts at the seconds recorded before it: step 4 is later in the run than step 3.
  const r4 = recorded.get(4)!;
  assert.ok(
    r4.elapsedSeconds >= recorded.get(3)!.elapsedSeconds,
    `step 4 at ${r4.elapsedSeconds} s, step 3 at ${recorded.get(3)!.elapsedSeconds} s`,
  );
  assert.ok(r4.lr <= recorded.get(3)!.lr);
});

test("a constant schedule sends the spec's GRPO params unchanged and records nothing", async () => {
  const l = learner(() => null);
  const deps = depsWith(l);
  const { store } = deps;
  const { job } = await runJobToEnd(store, new Coordinator(deps), spec({ steps: 3 }));
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  assert.deepEqual(
    l.attempts.map((a) => a.lr),
    [BASE_LR, BASE_LR, BASE_LR],
  );
  assert.equal(await bed.conn.exists(stepLrKey(job.id)), 0);
});

test("a restarted api's time budget goes on from the recorded run seconds, like the LR decay", async () => {
  const HANG_AT = 8;
  const l = learner((step, n) => (step === HANG_AT && n === 1 ? "hang" : null));
  const deps = depsWith(l);
  const { store } = deps;
  const budgetS = 6;
  const created = await stopWithStepInFlight(deps, l, timedSpec(budgetS / 60), HANG_AT);
  const before = (await recordedLrs(created.id)).get(HANG_AT)!.elapsedSeconds;
  assert.ok(before > 0.8, `${HANG_AT - 1} steps ran before the restart (${before} s)`);
  const job = await resumeToEnd(deps, (await store.get(created.id))!);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  // Every step started inside the one budget: a budget restarted with the api would have run
  // steps up to `before` seconds past it.
  const last = Math.max(...[...(await recordedLrs(created.id)).values()].map((r) => r.elapsedSeconds));
  assert.ok(last < budgetS + before / 2, `the last step started at ${last} s of a ${budgetS} s budget (${before} s before the restart)`);
  assert.ok(last > budgetS - 1, `the run used its budget (last step at ${last} s)`);
});

test("without an LR decay too, a restarted api's time budget goes on from the run clock recorded at each step's start", async () => {
  const HANG_AT = 8;
  const l = learner((step, n) => (step === HANG_AT && n === 1 ? "hang" : null));
  const deps = depsWith(l);
  const { store } = deps;
  const budgetS = 6;
  const created = await stopWithStepInFlight(deps, l, spec({ steps: 1_000_000, maxMinutes: budgetS / 60 }), HANG_AT);
  const clock = async () => Number(await bed.conn.get(runSecondsKey(created.id)));
  const before = await clock();
  assert.ok(before > 0.8, `${HANG_AT - 1} steps ran before the restart (${before} s)`);
  const job = await resumeToEnd(deps, (await store.get(created.id))!);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  // The last step started inside the one budget: a budget restarted with the api would have run
  // steps up to `before` seconds past it.
  const last = await clock();
  assert.ok(last < budgetS + before / 2, `the last step started at ${last} s of a ${budgetS} s budget (${before} s before the restart)`);
  assert.ok(last > budgetS - 1, `the run used its budget (last step at ${last} s)`);
  // Measured by the learner's wall clock too (first TrainStep to last, the restart included).
  const span = (l.attempts.at(-1)!.atMs - l.attempts[0]!.atMs) / 1000;
  assert.ok(span < budgetS + before / 2, `TrainSteps over ${span} s of a ${budgetS} s budget`);
  assert.equal(await bed.conn.exists(stepLrKey(created.id)), 0, "no LR records without a decay");
});
