// The worker's retry policy against a real Redis (no Docker): a SandboxError is retried with
// backoff and the job fails (sandbox_error: no reward) only when every attempt failed; a
// candidate's failure is a final result at once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type LocalRedis, createRedis, startLocalRedis } from "@rlmesh/shared";
import { type Job, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type RewardJobData, enqueueRewardJobs } from "@rlmesh/shared/reward/reward-jobs";
import { type RewardResult, classifyFailedReason, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { DEFAULT_MAX_FORGIVEN_STALLS, DEFAULT_MAX_STALLED_COUNT, FORGIVEN_FIELD, createRewardWorker } from "./reward-worker.js";
import { InvalidJobError, NotStartedError, SandboxError } from "./sandbox-error.js";

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

const PASSED = () => rewardResult({ status: "passed", tests_run: 1, tests_passed: 1, tests_total: 1, duration_ms: 1, reason: "" });

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
    score: async () => PASSED(),
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

/** A run that never ends (its executor dies in it). */
const NEVER = () => new Promise<RewardResult>(() => {});
/** Locks and stall checks short enough that a dead worker's job is taken back within about a second. */
const FAST_STALLS = { concurrency: 1, lockDurationMs: 1000, stalledIntervalMs: 300 } as const;
const jobKey = (queueName: string, id: string | undefined) => `bull:${queueName}:${id}`;
const forgivenStalls = async (queueName: string, id: string | undefined) =>
  Number(await conn("client").hget(jobKey(queueName, id), FORGIVEN_FIELD));

/** A queue holding one reward job (response `response`) for `body`; the queue is closed after it. */
async function withOneJob(queueName: string, response: string, body: (queue: Queue, job: Job) => Promise<void>): Promise<void> {
  const queue = new Queue(queueName, { connection: conn("client") });
  try {
    const [job] = await enqueueRewardJobs(queue, [data(0, response)]);
    await body(queue, job!);
  } finally {
    await queue.close();
  }
}

/**
 * An executor that dies holding a job, over and over, on the real BullMQ scripts: each worker
 * takes the job and never finishes it (`hold`), then is closed without waiting for it (its lock
 * is neither renewed nor released, as when the process is SIGKILLed); the next worker's stalled
 * check takes the job back after the lock expires. Returns the stalls seen on the queue.
 */
async function dieHolding(
  queueName: string,
  deaths: number,
  hold: (onStart: () => Promise<void>) => Promise<RewardResult>,
  afterTaken?: () => Promise<void>,
): Promise<number> {
  const events = new QueueEvents(queueName, { connection: conn("worker") });
  await events.waitUntilReady();
  const queue = new Queue(queueName, { connection: conn("client") });
  let stalls = 0;
  events.on("stalled", () => stalls++);
  try {
    for (let i = 0; i < deaths; i++) {
      let taken = false;
      const worker = createRewardWorker({
        connection: conn("worker"),
        queueName,
        ...FAST_STALLS,
        score: (_d, onStart) => {
          taken = true;
          return hold(onStart);
        },
      });
      const deadline = Date.now() + 20_000;
      while (!taken) {
        const failed = await queue.getFailedCount();
        if (failed > 0 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      if (taken) await afterTaken?.();
      await worker.close(true);
      if (!taken) break;
    }
    return stalls;
  } finally {
    await events.close();
    await queue.close();
  }
}

test(
  "held-job stall policy: a job whose executors die holding it (never started) has up to 3 stalls not counted, and is scored",
  { timeout: 90_000 },
  () =>
    withOneJob("reward-held-stalls", "held", async (queue, job) => {
      const queueName = queue.name;
      // 7 deaths: without the policy the 6th stall passes maxStalledCount (5) and the job fails.
      const stalls = await dieHolding(queueName, 7, NEVER);
      const events = new QueueEvents(queueName, { connection: conn("worker") });
      await events.waitUntilReady();
      const worker = createRewardWorker({ connection: conn("worker"), queueName, ...FAST_STALLS, score: async () => PASSED() });
      try {
        assert.equal(((await job.waitUntilFinished(events, 20_000)) as RewardResult).reward, 1);
      } finally {
        await worker.close();
        await events.close();
      }
      const stored = await queue.getJob(job.id!);
      const forgiven = await forgivenStalls(queueName, job.id);
      assert.ok(stalls >= 6, `stalls seen: ${stalls}`);
      assert.equal(forgiven, DEFAULT_MAX_FORGIVEN_STALLS, "7 held stalls: the policy forgave up to its bound");
      assert.equal((stored?.stalledCounter ?? 0) + forgiven, 7, "every stall is either in the counter or in rlmesh_forgiven");
      assert.ok(
        (stored?.stalledCounter ?? 0) <= DEFAULT_MAX_STALLED_COUNT,
        `stalled counter ${stored?.stalledCounter} after ${stalls} held stalls`,
      );
    }),
);

test("held-job stall policy: stalls while the job ran still count (the job fails after maxStalledCount)", { timeout: 90_000 }, () =>
  withOneJob("reward-running-stalls", "running", async (queue, job) => {
    const client = conn("client");
    const key = jobKey(queue.name, job.id);
    let started = 0;
    // Each worker starts the run (onStart) and dies in it; wait until the start is recorded.
    await dieHolding(
      queue.name,
      8,
      (onStart) => {
        void onStart();
        started++;
        return NEVER();
      },
      async () => {
        while (Number(await client.hget(key, "rlmesh_running")) < started) await new Promise((r) => setTimeout(r, 20));
      },
    );
    const stored = await queue.getJob(job.id!);
    assert.equal(await queue.getJobState(job.id!), "failed");
    assert.match(stored?.failedReason ?? "", /stalled more than allowable limit/);
    assert.equal(started, 6, "started on 6 executors: the 6th stall is past the limit of 5");
  }),
);

test(
  "held-job stall policy is bounded: a job that kills its executor at start (before onStart) still fails as executor_lost",
  { timeout: 120_000 },
  () =>
    withOneJob("reward-poison", "poison", async (queue, job) => {
      // Each executor takes the job and dies before the run is recorded: to Redis, a held stall.
      // Unbounded, the policy would forgive these forever (the loop below would reach 14 deaths).
      let fetches = 0;
      await dieHolding(queue.name, 14, () => {
        fetches++;
        return NEVER();
      });
      const stored = await queue.getJob(job.id!);
      assert.equal(await queue.getJobState(job.id!), "failed", `state after ${fetches} fetches`);
      assert.equal(classifyFailedReason(stored?.failedReason ?? ""), "executor_lost", stored?.failedReason);
      assert.equal(await forgivenStalls(queue.name, job.id), DEFAULT_MAX_FORGIVEN_STALLS);
      // 2 stalls, 3 forgiven (counter back to 1 each time), then up past 5: 5 + 3 + 1 fetches.
      assert.equal(fetches, DEFAULT_MAX_STALLED_COUNT + DEFAULT_MAX_FORGIVEN_STALLS + 1);
    }),
);

test(
  "a held job given back at shutdown (NotStartedError) returns to the queue without an attempt, and is scored later",
  { timeout: 30_000 },
  async () => {
    const queueName = "reward-given-back";
    const queue = new Queue(queueName, { connection: conn("client") });
    const events = new QueueEvents(queueName, { connection: conn("worker") });
    await events.waitUntilReady();
    let calls = 0;
    const worker = createRewardWorker({
      connection: conn("worker"),
      queueName,
      concurrency: 1,
      score: async () => {
        if (++calls === 1) throw new NotStartedError("executor shutting down");
        return PASSED();
      },
    });
    try {
      const [job] = await enqueueRewardJobs(queue, [data(0, "given-back")], { attempts: 1 });
      assert.equal(((await job!.waitUntilFinished(events, 20_000)) as RewardResult).reward, 1);
      assert.equal(calls, 2, "taken again after it was given back");
      const stored = await queue.getJob(job!.id!);
      assert.equal(
        stored?.attemptsMade,
        1,
        "the give-back was no attempt (1 attempt: the one that passed; attempts: 1 would have failed it otherwise)",
      );
    } finally {
      await worker.close();
      await events.close();
      await queue.close();
    }
  },
);
