// The reward path under load with faults, at CI scale: 2 000 reward jobs through BullMQ with 4
// real executor processes (Docker sandboxes), one executor SIGKILLed and restarted every 1.5 s,
// the private redis-server SIGKILLed and restarted once (AOF). Every job must complete exactly
// once, by the evidence of four independent sources (reward-queue-load.ts). The 20 000-job run
// is `rlmesh bench reward-queue --jobs 20000`. Needs dockerd and redis-server.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { percentiles, runRewardQueueLoad } from "./reward-queue-load.js";
import { requireDockerAndImage } from "./test-support.js";

before(async () => {
  await requireDockerAndImage();
});

test("percentiles", () => {
  assert.deepEqual(percentiles([]), { p50: 0, p99: 0, max: 0 });
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual(percentiles(v), { p50: 50, p99: 99, max: 100 });
});

test("2 000 reward jobs, 4 executors, an executor SIGKILLed every 1.5 s, Redis restarted once: each completes exactly once", { timeout: 300_000 }, async () => {
  const r = await runRewardQueueLoad({
    jobs: 2000,
    executors: 4,
    concurrency: 2,
    stepSize: 500,
    // Often enough that a fast machine's run (about 8 s on an idle one) still sees several kills.
    killEveryMs: 1500,
    redisRestartAt: 0.4,
    log: (l) => console.log(`# load: ${l}`),
  });
  console.log(`# load report: ${JSON.stringify(r)}`);
  console.log(
    `# stalls: ${r.stalled_jobs} stalled jobs in ${r.executor_kills} kills (${r.stalled_jobs_per_kill} per kill), ${r.stall_events} stall events (${r.forgiven_stalls} forgiven), max ${r.max_stall_events} per job, max stalled counter left ${r.max_stalled_count}`,
  );
  assert.deepEqual(r.outcomes, { completed: 2000 });
  assert.equal(r.lost, 0, "lost jobs");
  assert.equal(r.double_counted, 0, "jobs recorded more than once");
  assert.equal(r.wrong_rewards, 0, "every reward is the candidate's known answer");
  assert.equal(r.result_mismatch, 0, "the waiter got the result stored in Redis");
  // Every executor increment is 1, except where the increment died with its executor right after BullMQ accepted the result.
  assert.equal(r.recorded_once + r.recorded_uncounted, 2000);
  assert.ok(r.recorded_uncounted <= r.executor_kills * 2, `uncounted ${r.recorded_uncounted} > kills × concurrency`);
  assert.equal(r.redis_restarts, 1);
  assert.ok(r.executor_kills >= 3, `only ${r.executor_kills} kills`);
  assert.ok(r.redone_jobs > 0, "the kills hit jobs mid-run (else this proves nothing)");
  // Raw stall counts (stc + rlmesh_forgiven), printed in the report line above: the policy forgives at most 3 per job.
  assert.ok(r.stall_events >= r.stalled_jobs, `stall events ${r.stall_events} < stalled jobs ${r.stalled_jobs}`);
  assert.ok(r.forgiven_stalls <= 3 * r.stalled_jobs, `forgiven ${r.forgiven_stalls} > 3 per stalled job`);
});

test("the same faults with batch jobs of 8 candidates: each batch completes exactly once, every candidate with its own right reward", { timeout: 300_000 }, async () => {
  const r = await runRewardQueueLoad({
    jobs: 2000,
    batch: 8,
    executors: 4,
    concurrency: 2,
    stepSize: 500,
    killEveryMs: 1500,
    redisRestartAt: 0.4,
    log: (l) => console.log(`# load (batch 8): ${l}`),
  });
  console.log(`# load report (batch 8): ${JSON.stringify(r)}`);
  // 4 steps of 500 candidates, 63 batches each (62 of 8, one of 4).
  assert.equal(r.queue_jobs, 252);
  assert.deepEqual(r.outcomes, { batch: 252 });
  assert.equal(r.lost, 0, "lost batch jobs");
  assert.equal(r.double_counted, 0, "batch jobs recorded more than once");
  assert.equal(r.wrong_rewards, 0, "every candidate's reward is its known answer");
  assert.equal(r.result_mismatch, 0, "the waiter got the results stored in Redis");
  assert.equal(r.recorded_once + r.recorded_uncounted, 252);
  assert.ok(r.recorded_uncounted <= r.executor_kills * 2, `uncounted ${r.recorded_uncounted} > kills × concurrency`);
  assert.equal(r.redis_restarts, 1);
  assert.ok(r.executor_kills >= 3, `only ${r.executor_kills} kills`);
  assert.ok(r.redone_jobs > 0, "the kills hit batches mid-run (else this proves nothing)");
});
