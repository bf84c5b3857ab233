// The worker's retry policy against a real Redis (no Docker): a SandboxError is retried with
// backoff and the job fails (sandbox_error: no reward) only when every attempt failed; a
// candidate's failure is a final result at once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type LocalRedis, createRedis, startLocalRedis } from "@rlmesh/shared";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type RewardJobData, enqueueRewardJobs } from "@rlmesh/shared/reward/reward-jobs";
import { type RewardResult, classifyFailedReason, rewardResult } from "@rlmesh/shared/reward/reward-result";
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
    const settled = await Promise.allSettled(jobs.map((j) => j.waitUntilFinished(events, 20_000) as Promise<RewardResult>));
    const ok = (i: number) => (settled[i]!.status === "fulfilled" ? (settled[i] as PromiseFulfilledResult<RewardResult>).value : undefined);
    const why = (i: number) => (settled[i]!.status === "rejected" ? String((settled[i] as PromiseRejectedResult).reason?.message) : "");
    assert.deepEqual([ok(0)?.status, ok(0)?.reward], ["passed", 1]);
    assert.deepEqual([ok(2)?.status, ok(2)?.reward], ["failed", 0]);
    // An infrastructure failure is no result at all: the job fails, naming why.
    assert.equal(ok(1), undefined, "a sandbox that fails on every attempt gives no reward, not reward 0");
    assert.match(why(1), /^sandbox_error: sandbox failed on all 3 attempt\(s\): docker is down/);
    assert.equal(ok(3), undefined);
    assert.match(why(3), /^invalid_job: unknown test kind/);
    assert.equal(classifyFailedReason(why(1)), "sandbox_error");
    assert.equal(classifyFailedReason(why(3)), "invalid_job");
    assert.equal((await queue.getJob(jobs[1]!.id!))?.attemptsMade, 3);
    assert.deepEqual([calls.get("flaky"), calls.get("broken"), calls.get("wrong"), calls.get("malformed")], [3, 3, 1, 1]);
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
  }
});

test("a named worker records itself on every job it takes (processedBy), so a reward names its executor", { timeout: 30_000 }, async () => {
  const queueName = "reward-named";
  const queue = new Queue(queueName, { connection: conn("client") });
  const events = new QueueEvents(queueName, { connection: conn("worker") });
  await events.waitUntilReady();
  const worker = createRewardWorker({
    connection: conn("worker"),
    queueName,
    concurrency: 1,
    name: "executor-a",
    score: async () => rewardResult({ status: "passed", tests_run: 1, tests_passed: 1, tests_total: 1, duration_ms: 1, reason: "" }),
  });
  try {
    const [job] = await enqueueRewardJobs(queue, [data(0, "ok")]);
    assert.equal(((await job!.waitUntilFinished(events, 20_000)) as RewardResult).reward, 1);
    assert.equal((await queue.getJob(job!.id!))?.processedBy, "executor-a");
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
  }
});
