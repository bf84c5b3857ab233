// The worker's retry policy against a real Redis (no Docker): a SandboxError is retried with
// backoff and recorded as sandbox_error only when every attempt failed; a candidate's failure
// is final at once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type LocalRedis, createRedis, startLocalRedis } from "@rlmesh/shared";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type RewardJobData, enqueueRewardJobs } from "@rlmesh/shared/reward/reward-jobs";
import { type RewardResult, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { createRewardWorker } from "./reward-worker.js";
import { InvalidJobError, SandboxError } from "./sandbox-error.js";

let redis: LocalRedis;
const conns: Redis[] = [];
const conn = (role: "worker" | "client") => {
  const c = createRedis(redis.url, { role });
  conns.push(c);
  return c;
};

before(async () => {
  redis = await startLocalRedis();
});
after(async () => {
  await Promise.allSettled(conns.map((c) => c.quit()));
  await redis.stop();
});

const data = (sample: number, response: string): RewardJobData => ({
  job_id: "w:1",
  step: 3,
  sample_index: sample,
  problem_id: "p",
  response,
  tests: { kind: "assert", tests: ["assert True"] },
});

test("sandbox errors are retried; candidate failures are final; ids are idempotent", { timeout: 30_000 }, async () => {
  const queueName = "reward-retry";
  const queue = new Queue(queueName, { connection: conn("client") });
  const events = new QueueEvents(queueName, { connection: conn("worker") });
  await events.waitUntilReady();
  const calls = new Map<string, number>();
  const worker = createRewardWorker({
    connection: conn("worker"),
    queueName,
    concurrency: 2,
    score: async (d) => {
      const n = (calls.get(d.response) ?? 0) + 1;
      calls.set(d.response, n);
      if (d.response === "flaky" && n < 3) throw new SandboxError("docker hiccup");
      if (d.response === "broken") throw new SandboxError("docker is down");
      if (d.response === "malformed") throw new InvalidJobError("unknown test kind");
      const status = d.response === "wrong" ? "failed" : "passed";
      return rewardResult({ status, tests_run: 1, tests_passed: status === "passed" ? 1 : 0, tests_total: 1, duration_ms: 1, reason: "" });
    },
  });
  try {
    const jobs = await enqueueRewardJobs(queue, [data(0, "flaky"), data(1, "broken"), data(2, "wrong"), data(3, "malformed")], {
      backoff: { type: "fixed", delay: 50 },
    });
    const again = await enqueueRewardJobs(queue, [data(2, "wrong")]);
    assert.equal(again[0]!.id, jobs[2]!.id, "same candidate, same job");
    assert.equal(jobs[0]!.id, "w_1-3-0");
    const results = (await Promise.all(jobs.map((j) => j.waitUntilFinished(events, 20_000)))) as RewardResult[];
    assert.deepEqual(
      results.map((r) => [r.status, r.reward]),
      [
        ["passed", 1],
        ["sandbox_error", 0],
        ["failed", 0],
        ["sandbox_error", 0],
      ],
    );
    assert.deepEqual([calls.get("flaky"), calls.get("broken"), calls.get("wrong"), calls.get("malformed")], [3, 3, 1, 1]);
    assert.match(results[3]!.reason, /invalid job/);
    assert.match(results[1]!.reason, /docker is down/);
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
  }
});
