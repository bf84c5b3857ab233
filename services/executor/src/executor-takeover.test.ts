// How fast a SIGKILLed executor's in-flight reward job is taken back, on the shipped defaults
// (DEFAULT_LOCK_MS, DEFAULT_STALLED_INTERVAL_MS: the executors here get no lock or interval
// setting). Measured from the SIGKILL to the moment another executor starts the job (BullMQ's
// `active` event), for a standing executor and for a new one started in the dead one's place (as
// `rlmesh up`'s supervisor does); printed, and bounded well below BullMQ's 30 s + 30 s defaults.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import type { Job } from "bullmq";
import { type LocalRedis, startLocalRedis } from "@rlmesh/shared";
import type { AssertTests } from "@rlmesh/shared/datasets/index";
import type { RewardResult } from "@rlmesh/shared/reward/reward-result";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { DEFAULT_LOCK_MS, DEFAULT_STALLED_INTERVAL_MS } from "./reward-worker.js";
import { QueueClient, fenced, requireDockerAndImage } from "./test-support.js";

const ADD: AssertTests = { kind: "assert", tests: ["assert add(1, 2) == 3"] };
/** Correct, and slow enough to be caught mid-job. */
const SLOW_GOOD = "import time\ntime.sleep(3)\ndef add(a, b):\n    return a + b";
/** By construction (see DEFAULT_LOCK_MS): the lock runs out, then the next-but-one stalled check moves the job. */
const DESIGN_BOUND_MS = DEFAULT_LOCK_MS + 2 * DEFAULT_STALLED_INTERVAL_MS;
/** What the test allows: the design bound plus room for a loaded 2-core machine. */
const ALLOWED_MS = DESIGN_BOUND_MS + 11_000;

let redis: LocalRedis;
let client: QueueClient;
const children: ChildProcess[] = [];

before(async () => {
  await requireDockerAndImage();
  redis = await startLocalRedis();
  client = new QueueClient(redis.url, "reward-takeover");
  await client.ready();
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await client?.close();
  await redis?.stop();
});

/** `node dist/main.js` (the real executor service) on the shipped lock defaults; resolves once it consumes the queue. */
function spawnExecutor(id: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [resolve(REPO_ROOT, "services/executor/dist/main.js")], {
    env: {
      PATH: process.env.PATH,
      REDIS_URL: redis.url,
      RLMESH_REWARD_QUEUE: "reward-takeover",
      RLMESH_EXECUTOR_CONCURRENCY: "1",
      RLMESH_EXECUTOR_METRICS_PORT: "0",
      RLMESH_EXECUTOR_ID: id,
      RLMESH_SANDBOX_BACKEND: "docker",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  return new Promise((ready, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`executor ${id} did not start: ${log}`)), 90_000);
    child.stderr.on("data", (d: Buffer) => {
      log += d.toString();
      if (log.includes('"executor ready"')) {
        clearTimeout(timer);
        ready(child);
      }
    });
    child.once("exit", (code) => reject(new Error(`executor ${id} exited with ${code}: ${log}`)));
  });
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves with the time (performance.now()) of the next `active` event of `jobId`. */
function nextActive(jobId: string): Promise<number> {
  return new Promise((resolveActive) => {
    const on = (e: { jobId: string }) => {
      if (e.jobId !== jobId) return;
      client.events.off("active", on);
      resolveActive(performance.now());
    };
    client.events.on("active", on);
  });
}

/**
 * Submits a slow candidate, waits until `holder` (the only executor) runs it, calls `beforeKill`
 * (starts a standing executor), SIGKILLs `holder`, calls `afterKill` (starts a new executor in
 * its place) and returns the ms from the kill to the job's next start, checking that `taker`
 * started it and that it was scored once, as stalled work.
 */
async function takeover(
  holder: { id: string; proc: ChildProcess },
  taker: string,
  hooks: { beforeKill?: () => Promise<unknown>; afterKill?: () => Promise<unknown> },
): Promise<number> {
  const job: Job = await client.submit(fenced(SLOW_GOOD), ADD, { timeout_ms_per_test: 30_000, total_timeout_ms: 60_000 });
  await waitFor(`${holder.id} to run the job`, async () => {
    const j = await client.queue.getJob(job.id!);
    return (await j?.getState()) === "active" && j?.processedBy === holder.id;
  });
  await hooks.beforeKill?.();
  const started = nextActive(job.id!);
  const exited = new Promise((r) => holder.proc.once("exit", r));
  holder.proc.kill("SIGKILL");
  const killedAt = performance.now();
  await exited;
  await hooks.afterKill?.();
  const ms = (await started) - killedAt;
  const result = (await job.waitUntilFinished(client.events, 60_000)) as RewardResult;
  assert.equal(result.status, "passed");
  const stored = await client.queue.getJob(job.id!);
  assert.equal(stored?.processedBy, taker, "the job was finished by the executor that took it back");
  assert.ok((stored?.stalledCounter ?? 0) >= 1, "taken back as stalled work (its lock ran out), not retried as a failure");
  assert.equal(stored?.attemptsMade, 1, "one scored attempt: the dead executor's run left no result");
  return ms;
}

test(
  "a SIGKILLed executor's in-flight job is started again by another executor within seconds, on the shipped lock defaults",
  { timeout: 240_000 },
  async (t) => {
    const a = await spawnExecutor("takeover-a");
    let b: ChildProcess | undefined;
    // A standing executor (started once a holds the job) takes it back: lock expiry plus at most
    // two of its stalled checks.
    const standing = await takeover({ id: "takeover-a", proc: a }, "takeover-b", {
      beforeKill: async () => (b = await spawnExecutor("takeover-b")),
    });
    // A new executor in the dead one's place (what up's supervisor starts): its start-up counts too.
    let fresh = 0;
    const replaced = await takeover({ id: "takeover-b", proc: b! }, "takeover-c", {
      afterKill: async () => {
        const t0 = performance.now();
        await spawnExecutor("takeover-c");
        fresh = performance.now() - t0;
      },
    });
    t.diagnostic(
      `SIGKILL to takeover on the defaults (lock ${DEFAULT_LOCK_MS} ms, stalled check every ${DEFAULT_STALLED_INTERVAL_MS} ms, ` +
        `design bound ${DESIGN_BOUND_MS} ms): standing executor ${(standing / 1000).toFixed(2)} s; ` +
        `new executor ${(replaced / 1000).toFixed(2)} s (its start-up ${(fresh / 1000).toFixed(2)} s); allowed ${ALLOWED_MS / 1000} s`,
    );
    assert.ok(standing <= ALLOWED_MS, `standing executor took the job back after ${standing.toFixed(0)} ms (allowed ${ALLOWED_MS})`);
    assert.ok(replaced <= ALLOWED_MS, `new executor took the job back after ${replaced.toFixed(0)} ms (allowed ${ALLOWED_MS})`);
  },
);
