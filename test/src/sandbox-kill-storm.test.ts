// A sandbox failure is never a reward, with a real executor whose Docker sandboxes are killed
// every 0.3 s (`docker kill` of its rlmesh.sandbox containers). The same candidates are scored
// once cleanly, then under the storm, through the api's QueueRewardScorer (BullMQ, retries with
// backoff): every candidate either gets the clean run's reward or no reward at all (dropped,
// named as sandbox_error / executor_lost) — never a 0 that the clean run scored 1.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import Docker from "dockerode";
import type { Redis } from "ioredis";
import { createLogger, createRedis, startLocalRedis, type LocalRedis, type SandboxLimits } from "@rlmesh/shared";
import { loadDataset } from "@rlmesh/shared/datasets/index";
import { INFRA_FAILURES } from "@rlmesh/shared/reward/reward-result";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { QueueRewardScorer } from "@rlmesh/api/coordinator/queue-reward-scorer";
import type { Candidate, Score } from "@rlmesh/api/coordinator/interfaces";
import { startExecutor, type RunningExecutor } from "@rlmesh/executor/executor";
import { SANDBOX_OWNER_LABEL } from "@rlmesh/executor/docker-sandbox";
import { requireDockerAndImage } from "@rlmesh/executor/test-support";
import { join } from "node:path";

const QUEUE = "reward-storm";
const N = 24;
const KILL_EVERY_MS = 300;
const NO_LIMITS: SandboxLimits = { timeoutMsPerTest: 0, totalTimeoutMs: 0, memoryMb: 0, outputBytes: 0 };

let docker: Docker;
let redis: LocalRedis;
let conn: Redis;
let executor: RunningExecutor;
let scorer: QueueRewardScorer;
const owner = `storm-${process.pid}`;

before(async () => {
  docker = await requireDockerAndImage();
  redis = await startLocalRedis();
  conn = createRedis(redis.url, { role: "worker" });
  executor = await startExecutor({ redisUrl: redis.url, queueName: QUEUE, concurrency: 2, executorId: owner, backend: "docker", logger: createLogger("executor", { level: "error" }) });
  scorer = new QueueRewardScorer(conn, QUEUE, createLogger("api", { level: "error" }));
  await scorer.ready();
});
after(async () => {
  await scorer?.close();
  await executor?.close();
  await conn?.quit();
  await redis?.stop();
});

/** Half the candidates are the reference (reward 1), half a wrong program (reward 0). */
function candidates(jobId: string): Candidate[] {
  const rows = loadDataset(join(REPO_ROOT, "datasets", "toy", "train.jsonl"), "rlmesh").slice(0, N / 2);
  return rows.flatMap((row, i) => [
    { jobId, step: 1, sampleIndex: 2 * i, row, response: row.reference ?? "" },
    { jobId, step: 1, sampleIndex: 2 * i + 1, row, response: "```python\ndef f(x):\n    return None\n```" },
  ]);
}

/** Scores the candidates once cleanly, then under a storm of `docker kill`s, through `scorer`; checks and reports. */
async function stormRun(t: { diagnostic(m: string): void }, scorer: QueueRewardScorer, tag: string, jobIds: (k: number) => string): Promise<void> {
  const clean = await scorer.score(candidates(`clean${tag}`), NO_LIMITS);
  assert.deepEqual(
    clean.map((s) => s.reward),
    Array.from({ length: N }, (_, k) => (k % 2 === 0 ? 1 : 0)),
    "clean run: references pass, wrong programs fail",
  );

  let kills = 0;
  let stop = false;
  const killer = (async () => {
    while (!stop) {
      const list = await docker.listContainers({ filters: { label: [`${SANDBOX_OWNER_LABEL}=${owner}`] } }).catch(() => []);
      await Promise.all(list.map((c) => docker.getContainer(c.Id).kill().then(() => kills++, () => undefined)));
      await new Promise((r) => setTimeout(r, KILL_EVERY_MS));
    }
  })();
  const t0 = Date.now();
  let storm: Score[];
  try {
    storm = await scorer.score(candidates(`storm${tag}`), NO_LIMITS);
  } finally {
    stop = true;
    await killer;
  }
  const seconds = (Date.now() - t0) / 1000;

  const dropped = storm.flatMap((s, k) => (s.reward === null ? [{ k, status: s.status, reason: s.reason }] : []));
  for (const [k, s] of storm.entries()) {
    if (s.reward === null) assert.ok((INFRA_FAILURES as readonly string[]).includes(s.status), `#${k}: ${s.status}`);
    else assert.equal(s.reward, clean[k]!.reward, `#${k}: a scored candidate has the clean run's reward (${s.status})`);
  }
  for (const d of dropped) assert.match(d.reason, /^(sandbox_error|executor_lost|invalid_job): |stalled/);
  // The storm did hit: containers were killed and jobs were retried.
  const q = (scorer as unknown as { queue: import("bullmq").Queue }).queue;
  const ids = [...new Set(storm.map((_, k) => jobIds(k)))];
  const jobs = await Promise.all(ids.map((id) => q.getJob(id)));
  assert.ok(jobs.every((j) => j !== undefined), "every job id is in the queue");
  const retried = jobs.filter((j) => (j?.attemptsMade ?? 0) > 1 || (j?.stalledCounter ?? 0) > 0).length;
  assert.ok(kills > 0, "the storm killed sandboxes");
  assert.ok(retried + dropped.length > 0, "some jobs were retried or candidates dropped");
  const matched = storm.filter((s) => s.reward !== null).length;
  t.diagnostic(`storm${tag}: ${kills} sandbox kills in ${seconds.toFixed(1)} s; ${matched}/${N} scored (all equal to the clean run), ${retried} of ${ids.length} job(s) retried, ${dropped.length} dropped: ${dropped.map((d) => `#${d.k} ${d.status}`).join(", ") || "none"}`);
}

test("docker kill of the sandboxes every 0.3 s: each candidate gets the clean run's reward, or none (dropped, named) — never a sandbox's 0", { timeout: 300_000 }, async (t) => {
  await stormRun(t, scorer, "", (k) => `storm-1-${k}`);
});

test("the same storm with batch jobs of 4 candidates (RLMESH_REWARD_BATCH=4): a killed run fails its whole batch's attempt, never one candidate's reward", { timeout: 300_000 }, async (t) => {
  const batched = new QueueRewardScorer(conn, QUEUE, createLogger("api", { level: "error" }), { batchSize: 4 });
  await batched.ready();
  try {
    await stormRun(t, batched, "b", (k) => `stormb-1-${k - (k % 4)}-b4`);
  } finally {
    await batched.close();
  }
});
