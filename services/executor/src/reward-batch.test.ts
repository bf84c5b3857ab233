// Batch reward jobs (several candidates per BullMQ job) through a real Redis and a real executor
// on the Docker sandbox: one result per candidate in order, idempotent batch ids, a malformed
// candidate failing its batch (and only it) with a reason naming it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type LocalRedis, createRedis, startLocalRedis } from "@rlmesh/shared";
import type { AssertTests, TestSpec } from "@rlmesh/shared/datasets/index";
import { type RewardJobData, REWARD_BATCH_JOB } from "@rlmesh/shared/reward/reward-jobs";
import { RewardWaiter } from "@rlmesh/shared/reward/reward-waiter";
import { type RunningExecutor, startExecutor } from "./executor.js";
import { fenced, requireDockerAndImage } from "./test-support.js";

const ADD: AssertTests = { kind: "assert", tests: ["assert add(1, 2) == 3", "assert add(2, 2) == 4"] };
const RIGHT = fenced("def add(a, b):\n    return a + b");
const WRONG = fenced("def add(a, b):\n    return a - b");
const CRASH = fenced("def add(a, b):\n    raise ValueError('no')");
const PROSE = "I would add the two numbers.";

let redis: LocalRedis;
let executor: RunningExecutor;
const connections: Redis[] = [];
let queue: Queue;
let events: QueueEvents;
let waiter: RewardWaiter;
const QUEUE = "reward-batch-test";

before(async () => {
  await requireDockerAndImage();
  redis = await startLocalRedis();
  executor = await startExecutor({ redisUrl: redis.url, queueName: QUEUE, concurrency: 2 });
  connections.push(createRedis(redis.url, { role: "client" }), createRedis(redis.url, { role: "worker" }));
  queue = new Queue(QUEUE, { connection: connections[0]! });
  events = new QueueEvents(QUEUE, { connection: connections[1]! });
  await events.waitUntilReady();
  waiter = new RewardWaiter(queue, events);
});

after(async () => {
  waiter?.close();
  await events?.close();
  await queue?.close();
  for (const c of connections) c.disconnect();
  await executor?.close();
  await redis?.stop();
});

const candidate = (jobId: string, step: number, i: number, response: string, tests: TestSpec = ADD): RewardJobData => ({
  job_id: jobId,
  step,
  sample_index: i,
  problem_id: "add",
  response,
  tests,
});

test("batches: one BullMQ job per batch, each candidate's own result in order, the same batches found again on a re-run", { timeout: 120_000 }, async () => {
  const responses = [RIGHT, WRONG, PROSE, CRASH, RIGHT];
  const jobs = responses.map((r, i) => candidate("jb", 0, i, r));
  const outcomes = await waiter.waitForCandidates(jobs, 2, 60_000);
  assert.deepEqual(
    outcomes.map((o) => (o.state === "completed" ? `${o.result.status}:${o.result.reward}` : o.state)),
    ["passed:1", "failed:0", "format_error:0", "runtime_error:0", "passed:1"],
  );
  const stored = await queue.getJobs(["completed"]);
  assert.deepEqual(stored.map((j) => j.id).sort(), ["jb-0-0-b2", "jb-0-2-b2", "jb-0-4-b1"]);
  assert.ok(stored.every((j) => j.name === REWARD_BATCH_JOB));
  assert.deepEqual(stored.find((j) => j.id === "jb-0-0-b2")!.returnvalue.map((r: { reward: number }) => r.reward), [1, 0]);

  // A step re-run forms the same batches: nothing new is enqueued, the stored results come back.
  const again = await waiter.waitForCandidates(jobs, 2, 60_000);
  assert.deepEqual(again, outcomes);
  assert.equal((await queue.getJobCounts("completed")).completed, 3);
});

test("a batch never mixes steps; a malformed candidate fails its own batch (named) and no other", { timeout: 120_000 }, async () => {
  const bad = { kind: "nope" } as unknown as TestSpec;
  const jobs = [candidate("jm", 0, 0, RIGHT), candidate("jm", 0, 1, RIGHT, bad), candidate("jm", 1, 2, RIGHT), candidate("jm", 1, 3, WRONG)];
  const outcomes = await waiter.waitForCandidates(jobs, 8, 60_000);
  for (const o of outcomes.slice(0, 2)) {
    assert.equal(o.state, "failed");
    assert.match(o.state === "failed" ? o.reason : "", /^invalid_job: candidate 1 of 2 in the batch: unknown test kind "nope"/);
  }
  assert.deepEqual(
    outcomes.slice(2).map((o) => (o.state === "completed" ? o.result.reward : o.state)),
    [1, 0],
  );
  assert.deepEqual((await queue.getJobs(["completed", "failed"])).map((j) => j.id).filter((id) => id?.startsWith("jm-")).sort(), ["jm-0-0-b2", "jm-1-2-b2"]);
});

test("a batch job with no candidates is refused as invalid_job, not retried", { timeout: 60_000 }, async () => {
  const job = await queue.add(REWARD_BATCH_JOB, { candidates: [] }, { jobId: "empty-batch", attempts: 3 });
  await assert.rejects(job.waitUntilFinished(events, 30_000), /invalid_job: a batch job needs a non-empty candidates list/);
  const stored = await queue.getJob("empty-batch");
  assert.equal(stored?.attemptsMade, 1);
});
