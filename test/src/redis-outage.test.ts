// A 60 s Redis outage in the middle of an RL job on the real local mesh (real processes, Redis,
// Docker): every service rides it out without crashing (none is restarted by the supervisor), the
// job carries on once Redis is back, and it ends exactly like a clean run of the same spec — the
// same steps once each, the same rewards per step, one reward job per candidate, none lost or
// scored twice. Redis is held down on purpose (mesh.redis.kill) so the supervisor does not
// restart it early.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { createRedis, type JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";

const STEPS = 3;
const PROMPTS = 2;
const GROUP = 4;
const OUTAGE_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let mesh: LocalMesh;
const lines: string[] = [];
before(async () => {
  mesh = await startLocalMesh({
    rollouts: 1,
    executors: 1,
    modelDir: DEFAULT_MODEL_DIR,
    fixedPorts: false,
    stateDir: mkdtempSync(join(tmpdir(), "rlmesh-redis-outage-")),
    log: (l) => lines.push(l),
  });
});
after(async () => {
  await mesh?.stop();
});

const spec = (name: string) => ({
  name,
  modelDir: DEFAULT_MODEL_DIR,
  seed: 21,
  steps: STEPS,
  promptsPerStep: PROMPTS,
  groupSize: GROUP,
  dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
});

/** Runs a job to its end, following it across the outage; `onStep` sees each step event. */
async function runJob(name: string, onStep: (step: number) => Promise<void> = async () => undefined) {
  const client = jobClient(mesh.apiAddr);
  const job = await jobs.submit(client, spec(name));
  const events: JobEvent[] = [];
  let pending: Promise<void> = Promise.resolve();
  for await (const e of jobs.watchResilient(client, job.id, 0, { giveUpMs: OUTAGE_MS + 120_000 })) {
    events.push(e);
    if (e.step) pending = pending.then(() => onStep(e.step!.step));
  }
  await pending;
  const done = await jobs.get(client, job.id);
  client.close();
  return { job: done, events };
}

test("a 60 s Redis outage mid-job: no service crashes, and the job ends exactly like a clean run", { timeout: 600_000 }, async () => {
  const clean = await runJob("clean");
  assert.equal(clean.job.state, "JOB_STATE_SUCCEEDED");

  let outage = 0;
  const hit = await runJob("outage", async (step) => {
    if (step !== 1) return;
    const t0 = Date.now();
    await mesh.redis!.kill();
    await sleep(OUTAGE_MS);
    await mesh.redis!.restart();
    outage = Date.now() - t0;
  });
  const said = hit.events.filter((e) => e.log).map((e) => `${e.log!.level}: ${e.log!.message}`);
  assert.equal(hit.job.state, "JOB_STATE_SUCCEEDED", said.join("\n"));
  assert.ok(outage >= OUTAGE_MS, `Redis was down ${outage} ms`);
  assert.deepEqual(mesh.restarts(), {}, `no service died during the outage:\n${lines.join("\n")}`);
  for (const p of mesh.processes) assert.equal(p.proc.exitCode, null, `${p.name} is still running`);

  const redis = createRedis(mesh.redisUrl, { role: "worker" });
  const queue = new Queue("reward", { connection: redis });
  const finished = await queue.getJobs(["completed", "failed"], 0, -1);
  /** Per step, each candidate's reward job: sample, status and reason (the diagnosis when runs differ). */
  const rewardsOf = (jobId: string) =>
    finished
      .filter((j) => j.id?.startsWith(`${jobId}-`))
      .map((j) => `${j.id!.slice(jobId.length + 1)} ${(j.returnvalue as { status?: string } | undefined)?.status ?? `failed: ${j.failedReason}`} ${(j.returnvalue as { reason?: string } | undefined)?.reason ?? ""}`)
      .sort();
  const stepsOf = (events: JobEvent[]) => events.filter((e) => e.step).map((e) => e.step!);
  assert.deepEqual(
    stepsOf(hit.events).map((s) => Number(s.step)),
    Array.from({ length: STEPS }, (_, i) => i + 1),
    "each step once",
  );
  assert.deepEqual(
    stepsOf(hit.events).map((s) => [Number(s.step), s.candidates, s.rewardMean]),
    stepsOf(clean.events).map((s) => [Number(s.step), s.candidates, s.rewardMean]),
    `the same candidates and rewards per step as the clean run; reward jobs:\nclean:\n${rewardsOf(clean.job.id).join("\n")}\noutage:\n${rewardsOf(hit.job.id).join("\n")}`,
  );
  assert.equal(hit.job.policyVersion, clean.job.policyVersion);

  const completed = (await queue.getJobs(["completed"], 0, -1)).filter((j) => j.id?.startsWith(`${hit.job.id}-`));
  assert.equal(completed.length, STEPS * PROMPTS * GROUP, "exactly one completed reward job per candidate");
  assert.equal(new Set(completed.map((j) => j.id)).size, completed.length);
  const left = (await queue.getJobs(["failed", "waiting", "active", "delayed"], 0, -1)).filter((j) => j.id?.startsWith(`${hit.job.id}-`));
  assert.equal(left.length, 0, "nothing lost or left queued");
  await queue.close();
  redis.disconnect();
});
