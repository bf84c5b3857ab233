// A candidate the sandbox infrastructure could not score (sandbox_error, executor_lost,
// infra_timeout after its retries) is never a reward: the runner drops it from its group, says
// which one in an event, counts it, and fails the job when too many of a step's candidates are
// dropped. Real Redis (job state, events) and a real prom-client registry; the rollout pool,
// the reward queue and the learner are faked at their seams.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { createLogger, type TrainStepRequestIn, type TrainStepResponse } from "@rlmesh/shared";
import { ApiMetrics } from "../api-metrics.js";
import { normalizeSpec } from "../job-spec.js";
import { JobStore } from "../job-store.js";
import { Coordinator } from "./coordinator.js";
import { fakeRollout, runJobToEnd, runnerTestbed } from "./testing/runner-testbed.js";
import type { LearnerClient, RewardScorer, Score } from "./interfaces.js";

const bed = runnerTestbed("infra-failures-test");
const { dir, dataset } = bed;
/** One sample per (prompt, g). */
const rollout = fakeRollout((k) => [2, 3 + k]);

/** Every candidate passes except those `drop` names (step → sample indexes), which get no reward. */
function scorer(drop: Record<number, number[]>): RewardScorer & { calls: number } {
  const s = {
    calls: 0,
    score: async (cands: { step: number; sampleIndex: number }[]): Promise<Score[]> => {
      s.calls++;
      return cands.map((c) =>
        drop[c.step]?.includes(c.sampleIndex)
          ? { reward: null, status: "sandbox_error", reason: "sandbox_error: sandbox failed on all 3 attempt(s): sandbox stream closed" }
          : { reward: c.sampleIndex % 2, status: c.sampleIndex % 2 ? "passed" : "failed" },
      );
    },
    purge: async () => 0,
  };
  return s;
}

function learner(): LearnerClient & { requests: TrainStepRequestIn[] } {
  let version = 0;
  const requests: TrainStepRequestIn[] = [];
  return {
    requests,
    startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
    trainStep: async (req) => {
      requests.push(req);
      return { policyVersion: ++version, stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 } as unknown as TrainStepResponse;
    },
  };
}

async function run(rewards: RewardScorer, l: LearnerClient, maxInfraFailureRate?: number) {
  const store = new JobStore(bed.conn);
  const registry = new Registry();
  const metrics = new ApiMetrics(registry);
  const deps = {
    store,
    redis: bed.conn,
    rollout,
    rewards,
    learner: l,
    metrics,
    logger: createLogger("api-test", { level: "error" }),
    ...(maxInfraFailureRate !== undefined ? { maxInfraFailureRate } : {}),
  };
  // 4 prompts × G 4 = 16 candidates per step.
  const spec = normalizeSpec({ modelDir: dir, dataset: { path: dataset }, groupSize: 4, promptsPerStep: 4, steps: 3 });
  const { job, events } = await runJobToEnd(store, new Coordinator(deps), spec);
  return { job, events, metricsText: await registry.metrics() };}

test("an unscored candidate is dropped from its group, named in an event and counted; never trained on as reward 0", async () => {
  const l = learner();
  // Step 2 loses sample 5 (prompt 1, an odd sample that would have passed) and 6.
  const { job, events, metricsText } = await run(scorer({ 2: [5, 6] }), l, 0.2);
  assert.equal(job.state, "JOB_STATE_SUCCEEDED", job.error);
  assert.deepEqual(
    l.requests.map((r) => r.samples?.length),
    [16, 14, 16],
    "the two dropped samples are not trained on",
  );
  const step2 = l.requests[1]!.samples!;
  assert.equal(step2.filter((s) => s.promptId === "2-1").length, 2, "prompt 1 lost samples 5 and 6 (indexes 1 and 2 of its group)");
  assert.ok(step2.every((s) => s.reward === 0 || s.reward === 1));
  const warn = events.find((e) => e.log && /step 2: dropped 2 of 16 sample/.test(e.log.message));
  assert.ok(warn, JSON.stringify(events.filter((e) => e.log)));
  assert.equal(warn.log!.level, "warn");
  assert.match(warn.log!.message, /#5 t\d \(sandbox_error: sandbox failed on all 3 attempt\(s\)/);
  assert.match(warn.log!.message, /#6 t\d/);
  assert.match(warn.log!.message, /not scored 0/);
  // The step's reward mean is over the 14 scored samples (7 odd ones passed: sample 5 is gone).
  assert.equal(events.find((e) => e.step?.step === 2)?.step?.rewardMean, 7 / 14);
  assert.match(metricsText, /rlmesh_reward_samples_dropped_total\{reason="sandbox_error",phase="train"\} 2/);
});

test("a step whose infrastructure-failure rate passes the limit fails the job, naming the rate and the samples, without retrying", async () => {
  const l = learner();
  const rewards = scorer({ 2: [0, 1, 2] }); // 3 of 16 = 18.75 % > the default 10 %
  const { job, events } = await run(rewards, l);
  assert.equal(job.state, "JOB_STATE_FAILED");
  assert.match(
    job.error,
    /step 2: infrastructure-failure rate 18\.8 % \(3 of 16 candidates got no reward: sandbox_error ×3\) is above the limit of 10 % \(RLMESH_MAX_INFRA_FAILURE_RATE\); dropped samples: #0, #1, #2/,
  );
  assert.equal(l.requests.length, 1, "step 2 is not trained");
  assert.equal(rewards.calls, 2, "the step is not retried: its reward jobs would fail the same way");
  assert.ok(events.some((e) => e.log && /step 2: dropped 3 of 16/.test(e.log.message)));
  assert.equal(events.at(-1)?.state?.to, "JOB_STATE_FAILED");
});
