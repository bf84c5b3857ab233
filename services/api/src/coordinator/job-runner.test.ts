// The job runner against a real Redis (job state and events), with the rollout pool, the reward
// queue and the learner faked at their seams: what the coordinator does with the learner's
// collapse-guard decisions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, type ReportEvalResponse, type TrainStepResponse } from "@rlmesh/shared";
import { normalizeSpec } from "../job-spec.js";
import { JobStore } from "../job-store.js";
import { Coordinator } from "./coordinator.js";
import { fakeRollout, runJobToEnd, runToEnd, runnerTestbed } from "./testing/runner-testbed.js";
import type { LearnerClient, RewardScorer } from "./interfaces.js";

const bed = runnerTestbed("job-runner-test");
const { dir, dataset } = bed;
/** One sample per (prompt, g). */
const rollout = fakeRollout();
const rewards: RewardScorer = {
  score: async (cands) => cands.map((c) => ({ reward: c.sampleIndex % 2, status: "ok" })),
  purge: async () => 0,
};

/** A learner whose guard answers `action` on step `atStep` (TrainStep) or at eval step `atEval`. */
function learner(guard: { atStep?: number; atEval?: number; action: string }): LearnerClient & { steps: number[] } {
  let version = 0;
  const steps: number[] = [];
  return {
    steps,
    startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
    trainStep: async (req) => {
      steps.push(Number(req.step));
      const hit = Number(req.step) === guard.atStep;
      return {
        policyVersion: ++version,
        stats: { numSamples: req.samples?.length ?? 0, guardAction: hit ? guard.action : "", guardReason: hit ? "mean reward 0.02 < 0.20 for 3 steps" : "" },
        pushSeconds: 0,
      } as unknown as TrainStepResponse;
    },
    reportEval: async (req) => {
      const hit = Number(req.step) === guard.atEval;
      return { policyVersion: version, guardAction: hit ? guard.action : "", guardReason: hit ? "pass@1 0.10 < best 0.40" : "" } as ReportEvalResponse;
    },
  };
}

async function run(l: LearnerClient, extra: { evalInterval?: number; overlap?: boolean } = {}) {
  const store = new JobStore(bed.conn);
  const deps = { store, redis: bed.conn, rollout, rewards, learner: l, logger: createLogger("api-test", { level: "error" }) };
  const spec = normalizeSpec({
    modelDir: dir,
    dataset: { path: dataset },
    evalDataset: extra.evalInterval !== undefined ? { path: dataset } : undefined,
    evalInterval: extra.evalInterval ?? 0,
    overlap: extra.overlap ?? false,
    groupSize: 2,
    promptsPerStep: 2,
    steps: 8,
  });
  const { job, events } = await runJobToEnd(store, new Coordinator(deps), spec, 200);
  const leftSamples = await bed.conn.keys(`rlmesh:job:${job.id}:step:*:samples`);
  return { job, events, leftSamples };}

test("a healthy job runs every step and succeeds; a guard rollback is recorded and training goes on", async () => {
  const l = learner({ atStep: 3, action: "rollback" });
  const { job, events } = await run(l);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED");
  assert.deepEqual(l.steps, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(events.find((e) => e.step?.step === 3)?.step?.train?.guardAction, "rollback");
  // The job's own mean over all its scored candidates, next to the last step's.
  assert.equal(Number(job.candidatesScored), 8 * 2 * 2);
  assert.equal(job.jobRewardMean, 0.5);
});

test("the guard's stop at a training step fails the job at that step, naming the reason, without retrying", async () => {
  const l = learner({ atStep: 3, action: "stop" });
  const { job, events } = await run(l);
  assert.equal(job.state, "JOB_STATE_FAILED");
  assert.deepEqual(l.steps, [1, 2, 3], "no step after the stop, and step 3 is not retried");
  assert.equal(job.step, 3, "the stopped step is recorded");
  assert.match(job.error, /collapse guard stopped the job at step 3 \(step reward: mean reward 0\.02 < 0\.20 for 3 steps\)/);
  assert.equal(events.filter((e) => e.step).length, 3);
  assert.equal(events.at(-1)?.state?.to, "JOB_STATE_FAILED", "the failure is recorded with the step, as the job's last event");
});

test("the guard's stop on a held-out eval fails the job after that eval; with overlap the prefetched rollout is dropped", async () => {
  const l = learner({ atEval: 4, action: "stop" });
  const { job, events, leftSamples } = await run(l, { evalInterval: 2, overlap: true });
  assert.equal(job.state, "JOB_STATE_FAILED");
  assert.deepEqual(l.steps, [1, 2, 3, 4]);
  assert.match(job.error, /collapse guard stopped the job at step 4 \(held-out: pass@1 0\.10 < best 0\.40\)/);
  assert.ok(events.some((e) => e.log && /collapse guard \(held-out\): stop: pass@1 0\.10/.test(e.log.message)));
  assert.deepEqual(
    events.filter((e) => e.eval).map((e) => e.eval!.step),
    [0, 2, 4],
    "evals at 0, 2 and 4; no final eval after the stop",
  );
  assert.equal(events.at(-1)?.state?.to, "JOB_STATE_FAILED");
  assert.deepEqual(leftSamples, [], "step 5's prefetched samples are not left in Redis");
});

test("a stop at the final eval fails a job that ran every step", async () => {
  const l = learner({ atEval: 8, action: "stop" });
  const { job } = await run(l, { evalInterval: 0 });
  assert.deepEqual(l.steps, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(job.state, "JOB_STATE_FAILED");
  assert.match(job.error, /collapse guard stopped the job at step 8 \(held-out/);
});

test("two jobs submitted at once queue: the second waits QUEUED with an event naming the first, then starts on the learner after the first ends", async () => {
  const calls: string[] = [];
  const l: LearnerClient = {
    startJob: async (req) => {
      calls.push(`start ${req.jobId}`);
      return { jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] };
    },
    trainStep: async (req) => {
      calls.push(`train ${req.jobId} ${String(req.step)}`);
      await new Promise((r) => setTimeout(r, 5));
      return { policyVersion: Number(req.step), stats: { numSamples: 1 }, pushSeconds: 0 } as unknown as TrainStepResponse;
    },
  };
  const store = new JobStore(bed.conn);
  const coord = new Coordinator({ store, redis: bed.conn, rollout, rewards, learner: l, logger: createLogger("api-test", { level: "error" }) });
  const spec = normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, steps: 3 });
  const a = await store.create(spec);
  const b = await store.create(spec);
  coord.start(a);
  coord.start(b);
  assert.deepEqual(coord.queued, [b.id]);
  assert.equal((await store.get(b.id))?.state, "JOB_STATE_QUEUED");
  for (let i = 0; i < 400; i++) {
    const jb = await store.get(b.id);
    if (jb?.state === "JOB_STATE_SUCCEEDED") break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await coord.stop();
  assert.equal((await store.get(a.id))?.state, "JOB_STATE_SUCCEEDED");
  assert.equal((await store.get(b.id))?.state, "JOB_STATE_SUCCEEDED");
  assert.deepEqual(calls, [`start ${a.id}`, ...[1, 2, 3].map((s) => `train ${a.id} ${s}`), `start ${b.id}`, ...[1, 2, 3].map((s) => `train ${b.id} ${s}`)]);
  const eventsB = await store.readEvents(b.id, 0);
  const queuedAt = eventsB.findIndex((e) => e.log && e.log.message.startsWith(`queued: job ${a.id} is running`));
  const runningAt = eventsB.findIndex((e) => e.state?.to === "JOB_STATE_RUNNING");
  assert.ok(queuedAt >= 0 && runningAt > queuedAt, JSON.stringify(eventsB.map((e) => e.log?.message ?? e.state?.to)));
});

test("init_from a job that has not SUCCEEDED fails the job naming spec.init_from.job, before the learner is asked", async () => {
  const calls: string[] = [];
  const l = learner({ action: "" });
  const store = new JobStore(bed.conn);
  const coord = new Coordinator({ store, redis: bed.conn, rollout, rewards, learner: { ...l, startJob: async (req) => (calls.push(req.jobId ?? ""), l.startJob(req)) }, logger: createLogger("api-test", { level: "error" }) });
  const running = await store.create(normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, steps: 1 }));
  const job = await store.create(normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, steps: 1, initFrom: { job: running.id } }));
  coord.start(job);
  for (let i = 0; i < 200 && (await store.get(job.id))?.state !== "JOB_STATE_FAILED"; i++) await new Promise((r) => setTimeout(r, 25));
  await coord.stop();
  const done = await store.get(job.id);
  assert.equal(done?.state, "JOB_STATE_FAILED");
  assert.match(done.error, new RegExp(`^spec\\.init_from\\.job: job ${running.id} is JOB_STATE_QUEUED; only a SUCCEEDED job's final weights`));
  assert.deepEqual(calls, []);
});

test("a Redis error at a step's start (the run clock's write) while its rollout later fails: the api does not crash on the rollout's rejection, the step is retried, the job succeeds", async () => {
  // Stop 29's CI: the write threw before the step awaited its rollout, whose later rejection was
  // unhandled and ended the api (exit code 1) in a Redis outage.
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    let failedWrites = 0;
    const redis = new Proxy(bed.conn, {
      get(target, prop) {
        if (prop === "set") {
          return (key: string, ...rest: unknown[]) => {
            if (String(key).endsWith(":run_seconds") && failedWrites++ === 0) return Promise.reject(new Error("Connection is closed."));
            return (target.set as (...a: unknown[]) => Promise<unknown>).call(target, key, ...rest);
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const base = fakeRollout();
    let generated = 0;
    const failingOnce = {
      ...base,
      // The first rollout fails 50 ms after the step gave up on it (as a rollout does in an outage).
      generate: async (...args: Parameters<typeof base.generate>) => {
        if (generated++ === 0) {
          await new Promise((r) => setTimeout(r, 50));
          throw new Error("rollout lost");
        }
        return base.generate(...args);
      },
    } as unknown as typeof base;
    const store = new JobStore(bed.conn);
    const deps = { store, redis, rollout: failingOnce, rewards, learner: learner({ action: "" }), logger: createLogger("api-test", { level: "error" }) };
    const spec = normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, steps: 2 });
    const { job, events } = await runJobToEnd(store, new Coordinator(deps), spec, 400);
    await new Promise((r) => setTimeout(r, 100)); // past the failed rollout's rejection
    assert.equal(failedWrites >= 1 && generated >= 2, true, `writes ${failedWrites}, rollouts ${generated}`);
    assert.deepEqual(unhandled, [], "no unhandled rejection");
    assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
    // Retried as a Redis outage (no attempt used up): both steps ran once.
    assert.deepEqual(events.filter((e) => e.step).map((e) => Number(e.step!.step)), [1, 2]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

/** A learner that keeps a (fake) moving average: FinalizeWeights installs it once as a new version. */
function averagingLearner(startFinalized = false) {
  let version = 0;
  let finalized = startFinalized;
  const calls: string[] = [];
  const l: LearnerClient = {
    startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: version, resumed: startFinalized, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
    trainStep: async (req) => {
      calls.push(`train ${String(req.step)}`);
      if (finalized) throw new Error("FAILED_PRECONDITION: final weights are installed");
      return { policyVersion: ++version, stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 } as unknown as TrainStepResponse;
    },
    reportEval: async (req) => {
      calls.push(`report ${String(req.step)}`);
      return { policyVersion: version, guardAction: "", guardReason: "" } as ReportEvalResponse;
    },
    finalizeWeights: async (req) => {
      calls.push(req.checkOnly ? "check" : "finalize");
      const about = { averaged: true, averagedUpdates: version, emaDecay: 0.9, pushedTo: [], pushFailed: [] };
      if (finalized) return { policyVersion: version, alreadyFinal: true, ...about };
      if (!req.checkOnly) {
        finalized = true;
        version++;
      }
      return { policyVersion: version, alreadyFinal: false, ...about };
    },
  };
  return { l, calls };
}

/** Rewards that record each eval's candidate job id (its rollout/reward tag). */
function taggedRewards(tags: Set<string>): RewardScorer {
  return {
    score: async (cands) => {
      for (const c of cands) if (c.jobId.includes("-eval-")) tags.add(c.jobId.slice(c.jobId.indexOf("-eval-") + 1));
      return cands.map((c) => ({ reward: c.sampleIndex % 2, status: "ok" }));
    },
    purge: async () => 0,
  };
}

const emaSpec = (steps: number) =>
  normalizeSpec({ modelDir: dir, dataset: { path: dataset }, evalDataset: { path: dataset }, evalInterval: 2, groupSize: 2, promptsPerStep: 2, steps, grpo: { emaDecay: 0.9 } });

test("grpo.ema_decay: the last iterate is evaluated, FinalizeWeights installs the average, the final eval scores it under its own ids and is not reported to the guard", async () => {
  const { l, calls } = averagingLearner();
  const tags = new Set<string>();
  const store = new JobStore(bed.conn);
  const coord = new Coordinator({ store, redis: bed.conn, rollout, rewards: taggedRewards(tags), learner: l, logger: createLogger("api-test", { level: "error" }) });
  // 4 steps, evals every 2: the in-loop eval of step 2 and the final evals of step 4.
  const { job, events } = await runJobToEnd(store, coord, emaSpec(4));
  assert.equal(job.state, "JOB_STATE_SUCCEEDED");
  assert.deepEqual(calls, ["report 0", "train 1", "train 2", "report 2", "train 3", "train 4", "check", "finalize"]);
  assert.deepEqual(
    events.filter((e) => e.eval).map((e) => [Number(e.eval!.step), e.eval!.mode]),
    [
      [0, "greedy"],
      [2, "greedy"],
      [4, "last_iterate"],
      [4, "greedy"],
    ],
  );
  assert.deepEqual([...tags].sort(), ["eval-eval", "eval-eval-final", "eval-eval-last"]);
  assert.equal(Number(job.policyVersion), 5);
  assert.ok(events.some((e) => e.log?.message === "final weights: the moving average of the policy (ema_decay 0.9, 4 updates) as policy v5"));
});

test("an api restarted after FinalizeWeights trains no further step (the learner would refuse it): it runs the final eval and the job succeeds", async () => {
  const { l, calls } = averagingLearner(true);
  const tags = new Set<string>();
  const store = new JobStore(bed.conn);
  const created = await store.create(emaSpec(1_000));
  // Another api ran it to step 3 under a time budget and finalized it before dying.
  await store.transition(created.id, "JOB_STATE_RUNNING", "started");
  const job = await store.update(created.id, { step: 3 });
  const coord = new Coordinator({ store, redis: bed.conn, rollout, rewards: taggedRewards(tags), learner: l, logger: createLogger("api-test", { level: "error" }) });
  const { job: done, events } = await runToEnd(store, coord, job);
  assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
  assert.deepEqual(calls, ["check", "check"], "no TrainStep, no second FinalizeWeights, no guard report");
  assert.deepEqual(
    events.filter((e) => e.eval).map((e) => [Number(e.eval!.step), e.eval!.mode]),
    [[3, "greedy"]],
  );
  assert.deepEqual([...tags], ["eval-eval-final"]);
});
