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

const t00 = performance.now();
/** Progress lines with the time since start (they show where a failed or slow run spent its time). */
const progress = (line: string) => console.log(`# +${((performance.now() - t00) / 1000).toFixed(1)} s ${line}`);

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
        progress(`executor ${id} ready`);
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

/** Resolves with the time (performance.now()) of the next `active` event of `jobId`; rejects after `timeoutMs` naming the job's state. */
function nextActive(jobId: string, timeoutMs = 90_000): Promise<number> {
  return new Promise((resolveActive, reject) => {
    const on = (e: { jobId: string }) => {
      if (e.jobId !== jobId) return;
      clearTimeout(timer);
      client.events.off("active", on);
      resolveActive(performance.now());
    };
    const timer = setTimeout(() => {
      client.events.off("active", on);
      void client.queue
        .getJob(jobId)
        .then(async (j) =>
          reject(
            new Error(
              `job ${jobId} was not started again within ${timeoutMs} ms: state ${await j?.getState()}, processedBy ${j?.processedBy}, ` +
                `stalledCounter ${j?.stalledCounter}, attemptsMade ${j?.attemptsMade}, failedReason ${j?.failedReason}`,
            ),
          ),
        );
    }, timeoutMs);
    client.events.on("active", on);
  });
}

/**
 * Submits a slow candidate, waits until one of the `live` executors runs it, SIGKILLs that one,
 * starts `replacement` (a new executor in its place) if given, and returns the ms from the kill to
 * the job's next start, checking that a live executor (the replacement, if given) took it and
 * scored it once, as stalled work.
 */
async function takeover(
  live: Map<string, ChildProcess>,
  replacement?: string,
): Promise<{ ms: number; holder: string; taker: string; startup: number }> {
  const job: Job = await client.submit(fenced(SLOW_GOOD), ADD, { timeout_ms_per_test: 30_000, total_timeout_ms: 60_000 });
  let holder = "";
  await waitFor(`one of ${[...live.keys()].join(", ")} to run the job`, async () => {
    const j = await client.queue.getJob(job.id!);
    holder = (await j?.getState()) === "active" ? (j?.processedBy ?? "") : "";
    return live.has(holder);
  });
  const proc = live.get(holder)!;
  live.delete(holder);
  progress(`${holder} runs ${job.id}`);
  const started = nextActive(job.id!);
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGKILL");
  const killedAt = performance.now();
  await exited;
  progress(`${holder} killed`);
  let startup = 0;
  if (replacement) {
    live.set(replacement, await spawnExecutor(replacement));
    startup = performance.now() - killedAt;
  }
  const ms = (await started) - killedAt;
  progress(`${job.id} started again after ${ms.toFixed(0)} ms`);
  const result = (await job.waitUntilFinished(client.events, 60_000)) as RewardResult;
  assert.equal(result.status, "passed");
  const stored = await client.queue.getJob(job.id!);
  const taker = stored?.processedBy ?? "";
  assert.ok(live.has(taker), `the job was finished by a live executor (${taker}), not by the killed ${holder}`);
  if (replacement) assert.equal(taker, replacement);
  assert.ok((stored?.stalledCounter ?? 0) >= 1, "taken back as stalled work (its lock ran out), not retried as a failure");
  assert.equal(stored?.attemptsMade, 1, "one scored attempt: the dead executor's run left no result");
  return { ms, holder, taker, startup };
}

test(
  "a SIGKILLed executor's in-flight job is started again by another executor within seconds, on the shipped lock defaults",
  { timeout: 300_000 },
  async (t) => {
    const ids = ["takeover-a", "takeover-b"];
    const live = new Map((await Promise.all(ids.map(spawnExecutor))).map((proc, i) => [ids[i]!, proc]));
    // A standing executor takes the job back: the lock runs out, then at most two of its stalled checks.
    const standing = await takeover(live);
    // A new executor in the dead one's place (what up's supervisor starts; the survivor of the
    // first round holds the job): its start-up counts too.
    const replaced = await takeover(live, "takeover-c");
    t.diagnostic(
      `SIGKILL to takeover on the defaults (lock ${DEFAULT_LOCK_MS} ms, stalled check every ${DEFAULT_STALLED_INTERVAL_MS} ms, ` +
        `design bound ${DESIGN_BOUND_MS} ms): standing executor ${(standing.ms / 1000).toFixed(2)} s (${standing.holder} -> ${standing.taker}); ` +
        `new executor ${(replaced.ms / 1000).toFixed(2)} s (${replaced.holder} -> ${replaced.taker}, ready ${(replaced.startup / 1000).toFixed(2)} s after the kill); ` +
        `allowed ${ALLOWED_MS / 1000} s`,
    );
    assert.ok(standing.ms <= ALLOWED_MS, `standing executor took the job back after ${standing.ms.toFixed(0)} ms (allowed ${ALLOWED_MS})`);
    assert.ok(replaced.ms <= ALLOWED_MS, `new executor took the job back after ${replaced.ms.toFixed(0)} ms (allowed ${ALLOWED_MS})`);
  },
);
