// An executor process killed with SIGKILL mid-job: another executor redoes the job (BullMQ
// stalled-job recovery) and its reward is recorded exactly once. Also: SIGTERM lets the
// in-flight job finish before the process exits.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import Docker from "dockerode";
import { type LocalRedis, startLocalRedis } from "@rlmesh/shared";
import type { AssertTests } from "@rlmesh/shared/datasets/index";
import { SANDBOX_PID_LABEL } from "./docker-sandbox.js";
import { type RunningExecutor, startExecutor } from "./executor.js";
import type { RewardResult } from "@rlmesh/shared/reward/reward-result";
import type { RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { RewardWaiter } from "@rlmesh/shared/reward/reward-waiter";
import { QueueClient, fenced, requireDockerAndImage } from "./test-support.js";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const LOCK_MS = 2000;
const STALLED_INTERVAL_MS = 1000;
const ADD: AssertTests = { kind: "assert", tests: ["assert add(1, 2) == 3"] };
/** Correct, but slow enough to be caught mid-job. */
const SLOW_GOOD = "import time\ntime.sleep(3)\ndef add(a, b):\n    return a + b";

let docker: Docker;
let redis: LocalRedis;
const children: ChildProcess[] = [];
const executors: RunningExecutor[] = [];

before(async () => {
  docker = await requireDockerAndImage();
  redis = await startLocalRedis();
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const e of executors) await e.close();
  await redis?.stop();
});

/** Starts `node dist/main.js` (the real executor service) and resolves once it consumes the queue. */
function spawnExecutor(queue: string, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [resolve(REPO_ROOT, "services/executor/dist/main.js")], {
    env: {
      PATH: process.env.PATH,
      REDIS_URL: redis.url,
      RLMESH_REWARD_QUEUE: queue,
      RLMESH_EXECUTOR_CONCURRENCY: "1",
      RLMESH_EXECUTOR_METRICS_PORT: "0",
      RLMESH_EXECUTOR_LOCK_MS: String(LOCK_MS),
      RLMESH_EXECUTOR_STALLED_INTERVAL_MS: String(STALLED_INTERVAL_MS),
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  return new Promise((resolveReady, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`executor did not start: ${log}`)), 60_000);
    child.stderr.on("data", (d: Buffer) => {
      log += d.toString();
      if (log.includes('"executor ready"')) {
        clearTimeout(timer);
        resolveReady(child);
      }
    });
    child.once("exit", (code) => reject(new Error(`executor exited with ${code}: ${log}`)));
  });
}

/** A slow correct candidate (SLOW_GOOD) submitted with room for its sleep. */
const submitSlow = (client: QueueClient) =>
  client.submit(fenced(SLOW_GOOD), ADD, { timeout_ms_per_test: 20_000, total_timeout_ms: 30_000 });

/** Candidates of one batch (job `jobId`, step 0), each with room for SLOW_GOOD's sleep. */
const slowBatch = (jobId: string, programs: string[]): RewardJobData[] =>
  programs.map((p, i) => ({
    job_id: jobId,
    step: 0,
    sample_index: i,
    problem_id: "add",
    response: fenced(p),
    tests: ADD,
    limits: { timeout_ms_per_test: 20_000, total_timeout_ms: 30_000 },
  }));

/** A second executor, in this process, that takes over the queue. */
async function startSecond(queue: string): Promise<void> {
  const second = await startExecutor({
    redisUrl: redis.url,
    queueName: queue,
    concurrency: 1,
    lockDurationMs: LOCK_MS,
    stalledIntervalMs: STALLED_INTERVAL_MS,
  });
  executors.push(second);
}

/** An executor with one sandbox and a prefetch of one job per sandbox, holding two slow jobs (one running, one prefetched). */
async function holdTwo(client: QueueClient, queue: string) {
  const child = await spawnExecutor(queue, { RLMESH_EXECUTOR_PREFETCH: "1" });
  const jobs = [await submitSlow(client), await submitSlow(client)];
  await waitFor("both jobs to be held (one running, one prefetched)", async () =>
    (await Promise.all(jobs.map((j) => client.queue.getJobState(j.id!)))).every((s) => s === "active"),
  );
  return { child, jobs };
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("SIGKILL mid-job: another executor redoes the job, the reward is recorded once", { timeout: 120_000 }, async () => {
  const queue = "reward-crash";
  const client = new QueueClient(redis.url, queue);
  await client.ready();
  try {
    const completions: { jobId: string; returnvalue: unknown }[] = [];
    client.events.on("completed", (e) => completions.push(e));
    const first = await spawnExecutor(queue);
    const job = await submitSlow(client);
    await waitFor("the job to become active", async () => (await client.queue.getJobState(job.id!)) === "active");
    await new Promise((r) => setTimeout(r, 500)); // well inside the candidate's 3 s sleep
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));

    // The killed executor's sandbox removes itself (its stdin closed with the attach).
    await waitFor("the dead executor's sandbox to disappear", async () => {
      const list = await docker.listContainers({ all: true, filters: { label: [`${SANDBOX_PID_LABEL}=${first.pid}`] } });
      return list.length === 0;
    });

    await startSecond(queue);
    const result = (await job.waitUntilFinished(client.events, 60_000)) as RewardResult;
    assert.equal(result.reward, 1);
    assert.equal(result.status, "passed");
    await new Promise((r) => setTimeout(r, 3 * STALLED_INTERVAL_MS)); // room for a duplicate
    const mine = completions.filter((c) => c.jobId === job.id);
    assert.equal(mine.length, 1, "recorded exactly once");
    const stored = await client.queue.getJob(job.id!);
    assert.equal(stored?.returnvalue.reward, 1);
    assert.ok((stored?.stalledCounter ?? 0) >= 1, "the job was recovered as stalled, not run twice by luck");
  } finally {
    await client.close();
  }
});

test("SIGKILL with a prefetched job waiting for the sandbox: both jobs are redone, each recorded once", { timeout: 120_000 }, async () => {
  const queue = "reward-crash-prefetch";
  const client = new QueueClient(redis.url, queue);
  await client.ready();
  try {
    const completions: { jobId: string; returnvalue: unknown }[] = [];
    client.events.on("completed", (e) => completions.push(e));
    const { child: first, jobs } = await holdTwo(client, queue);
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    await startSecond(queue);
    for (const job of jobs) {
      const result = (await job.waitUntilFinished(client.events, 60_000)) as RewardResult;
      assert.equal(result.reward, 1);
    }
    await new Promise((r) => setTimeout(r, 3 * STALLED_INTERVAL_MS)); // room for a duplicate
    for (const job of jobs) {
      assert.equal(completions.filter((c) => c.jobId === job.id).length, 1, `job ${job.id} recorded exactly once`);
      const stored = await client.queue.getJob(job.id!);
      assert.ok((stored?.stalledCounter ?? 0) >= 1, `job ${job.id} was recovered as stalled`);
    }
  } finally {
    await client.close();
  }
});

/** A client of `queue`, a RewardWaiter on it and the ids of its `completed` events, for `fn`; closed after. */
async function onBatchQueue(
  queue: string,
  fn: (q: { client: QueueClient; waiter: RewardWaiter; completions: string[] }) => Promise<void>,
): Promise<void> {
  const client = new QueueClient(redis.url, queue);
  await client.ready();
  const waiter = new RewardWaiter(client.queue, client.events);
  const completions: string[] = [];
  client.events.on("completed", (e) => completions.push(e.jobId));
  try {
    await fn({ client, waiter, completions });
  } finally {
    waiter.close();
    await client.close();
  }
}

test(
  "SIGKILL mid-batch: another executor redoes the whole batch, each candidate's reward recorded once",
  { timeout: 120_000 },
  async () => {
    await onBatchQueue("reward-crash-batch", async ({ client, waiter, completions }) => {
      const first = await spawnExecutor("reward-crash-batch");
      const jobs = slowBatch("crash", [SLOW_GOOD, "def add(a, b):\n    return a - b", SLOW_GOOD]);
      const done = waiter.waitForCandidates(jobs, 3, 90_000);
      const id = "crash-0-0-b3";
      await waitFor("the batch to become active", async () => (await client.queue.getJobState(id)) === "active");
      await new Promise((r) => setTimeout(r, 500)); // inside the first candidate's 3 s sleep (one sandbox)
      first.kill("SIGKILL");
      await new Promise((r) => first.once("exit", r));
      await startSecond("reward-crash-batch");
      const outcomes = await done;
      assert.deepEqual(
        outcomes.map((o) => (o.state === "completed" ? o.result.reward : o.state)),
        [1, 0, 1],
      );
      await new Promise((r) => setTimeout(r, 3 * STALLED_INTERVAL_MS)); // room for a duplicate
      assert.deepEqual(completions, [id], "the batch recorded exactly once");
      const stored = await client.queue.getJob(id);
      assert.ok((stored?.stalledCounter ?? 0) >= 1, "the batch was recovered as stalled");
      assert.equal(await client.queue.count(), 0);
    });
  },
);

test("SIGTERM lets the in-flight job finish, then the executor exits", { timeout: 60_000 }, async () => {
  const queue = "reward-shutdown";
  const client = new QueueClient(redis.url, queue);
  await client.ready();
  try {
    const child = await spawnExecutor(queue);
    const job = await submitSlow(client);
    await waitFor("the job to become active", async () => (await client.queue.getJobState(job.id!)) === "active");
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    const result = (await job.waitUntilFinished(client.events, 30_000)) as RewardResult;
    assert.equal(result.reward, 1);
    assert.equal(await exited, 0);
    const left = await docker.listContainers({ all: true, filters: { label: [`${SANDBOX_PID_LABEL}=${child.pid}`] } });
    assert.equal(left.length, 0, "sandboxes removed on shutdown");
  } finally {
    await client.close();
  }
});

test(
  "SIGTERM with a prefetched job held: the running job finishes, the held one goes back to the queue unstarted and is scored once by another executor",
  { timeout: 120_000 },
  async () => {
    const queue = "reward-shutdown-held";
    const client = new QueueClient(redis.url, queue);
    await client.ready();
    try {
      const completions: { jobId: string }[] = [];
      client.events.on("completed", (e) => completions.push(e));
      const { child, jobs } = await holdTwo(client, queue);
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      const states = await Promise.all(jobs.map((j) => client.queue.getJobState(j.id!)));
      assert.deepEqual([...states].sort(), ["completed", "waiting"], `states after shutdown: ${states.join(", ")}`);
      const held = jobs[states.indexOf("waiting")]!;
      const stored = await client.queue.getJob(held.id!);
      assert.equal(stored?.attemptsMade, 0, "given back without an attempt");
      assert.equal(stored?.stalledCounter ?? 0, 0, "given back, not stalled");
      await startSecond(queue);
      assert.equal(((await held.waitUntilFinished(client.events, 60_000)) as RewardResult).reward, 1);
      await new Promise((r) => setTimeout(r, 3 * STALLED_INTERVAL_MS)); // room for a duplicate
      for (const job of jobs) assert.equal(completions.filter((c) => c.jobId === job.id).length, 1, `job ${job.id} recorded exactly once`);
    } finally {
      await client.close();
    }
  },
);

test(
  "SIGTERM mid-batch: the batch's running candidate finishes, the batch goes back to the queue without an attempt and is scored once by another executor",
  { timeout: 120_000 },
  async () => {
    const queue = "reward-shutdown-batch";
    await onBatchQueue(queue, async ({ client, waiter, completions }) => {
      const child = await spawnExecutor(queue); // one sandbox: one candidate runs, the other waits for it
      const done = waiter.waitForCandidates(slowBatch("term", [SLOW_GOOD, SLOW_GOOD]), 2, 90_000);
      const id = "term-0-0-b2";
      await waitFor("the batch to become active", async () => (await client.queue.getJobState(id)) === "active");
      await new Promise((r) => setTimeout(r, 500));
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      assert.equal(await client.queue.getJobState(id), "waiting");
      const stored = await client.queue.getJob(id);
      assert.equal(stored?.attemptsMade, 0, "given back without an attempt");
      assert.equal(stored?.stalledCounter ?? 0, 0, "given back, not stalled");
      await startSecond(queue);
      assert.deepEqual(
        (await done).map((o) => (o.state === "completed" ? o.result.reward : o.state)),
        [1, 1],
      );
      await new Promise((r) => setTimeout(r, 3 * STALLED_INTERVAL_MS)); // room for a duplicate
      assert.deepEqual(completions, [id], "the batch recorded exactly once");
    });
  },
);
