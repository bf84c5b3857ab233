// `rlmesh up`'s supervision on the real local mesh (real processes, Redis, Docker): a service
// killed from outside (SIGKILL of its pid, as a crash or the OOM killer would) is restarted with
// backoff, the death and the return are logged with the signal and told to the running job's
// events naming the service, and the job finishes. A crash loop is given up on (logged, told),
// and a step that waits on the missing executor says "waiting for an executor" every 10 s. The
// private redis-server is supervised the same way.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let mesh: LocalMesh;
const lines: string[] = [];

before(async () => {
  mesh = await startLocalMesh({
    rollouts: 1,
    executors: 1,
    modelDir: DEFAULT_MODEL_DIR,
    fixedPorts: false,
    stateDir: mkdtempSync(join(tmpdir(), "rlmesh-supervision-")),
    log: (l) => lines.push(l),
    // A fast backoff for the test; at most 3 restarts of one service within 10 minutes.
    supervision: { firstDelayMs: 300, maxRestarts: 3, windowMs: 600_000 },
  });
});
after(async () => {
  await mesh?.stop();
});

const spec = (steps: number, seed: number) => ({
  name: "supervision",
  modelDir: DEFAULT_MODEL_DIR,
  seed,
  steps,
  promptsPerStep: 2,
  groupSize: 4,
  dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
});
const pidOf = (name: string) => mesh.processes.find((p) => p.name === name)!.proc.pid!;
const logs = (events: JobEvent[]) => events.filter((e) => e.log).map((e) => `${e.log!.level}: ${e.log!.message}`);

/** Follows a job to its end across api restarts (resuming from the last offset). */
async function follow(id: string, onEvent: (e: JobEvent) => void = () => undefined): Promise<JobEvent[]> {
  const client = jobClient(mesh.apiAddr);
  const events: JobEvent[] = [];
  for await (const e of jobs.watchResilient(client, id, 0, { giveUpMs: 60_000 })) {
    events.push(e);
    onEvent(e);
  }
  client.close();
  return events;
}

test("killed services come back, say so in the job's events, and the job finishes", { timeout: 90_000 }, async () => {
  const client = jobClient(mesh.apiAddr);
  const job = await jobs.submit(client, spec(4, 3));
  const killed: string[] = [];
  const events = await follow(job.id, (e) => {
    // Step 1 done: kill the executor; step 2: the rollout worker; step 3: the api itself.
    const victim = { 1: "executor-0", 2: "rollout-0", 3: "api" }[Number(e.step?.step ?? 0)];
    if (victim && !killed.includes(victim)) {
      process.kill(pidOf(victim), "SIGKILL");
      killed.push(victim);
    }
  });
  const done = await jobs.get(client, job.id);
  client.close();
  assert.deepEqual(killed, ["executor-0", "rollout-0", "api"]);
  assert.equal(done.state, "JOB_STATE_SUCCEEDED", logs(events).join("\n"));
  assert.deepEqual(events.filter((e) => e.step).map((e) => e.step!.step), [1, 2, 3, 4]);
  const said = logs(events).join("\n");
  for (const name of killed) {
    assert.match(said, new RegExp(`warn: service ${name} exited \\(signal SIGKILL\\) after [\\d.]+ s; restarting it in [\\d.]+ s \\(restart 1 of at most 3`), said);
    assert.match(said, new RegExp(`info: service ${name} is back \\(pid \\d+, ready`), said);
    assert.ok(lines.some((l) => l.startsWith(`supervisor: ${name} exited (signal SIGKILL)`)), lines.join("\n"));
  }
  assert.deepEqual(mesh.restarts(), { "executor-0": 1, "rollout-0": 1, api: 1 });
});

test("a crash loop is given up on; a step waiting on the missing executor says so every 10 s, then finishes once it is back", { timeout: 90_000 }, async () => {
  // executor-0 died once above: two more deaths are restarted, the fourth is a crash loop.
  for (let i = 0; i < 3; i++) {
    const pid = pidOf("executor-0");
    process.kill(pid, "SIGKILL");
    for (let t = 0; t < 200 && (i === 2 ? !lines.some((l) => /executor-0 .*crash loop/.test(l)) : pidOf("executor-0") === pid || !lines.some((l) => l.includes(`executor-0 is back`) && !l.includes(`pid ${pid}`))); t++) await sleep(100);
  }
  assert.ok(
    lines.some((l) => /^supervisor: executor-0 exited \(signal SIGKILL\) after [\d.]+ s; it died 4 times within 600 s \(crash loop\): not restarting it/.test(l)),
    lines.join("\n"),
  );
  const client = jobClient(mesh.apiAddr);
  const job = await jobs.submit(client, spec(1, 4));
  let restarted = false;
  const events = await follow(job.id, (e) => {
    if (!restarted && e.log && /^waiting for an executor/.test(e.log.message)) {
      restarted = true;
      void mesh.restart("executor-0");
    }
  });
  const done = await jobs.get(client, job.id);
  client.close();
  assert.equal(done.state, "JOB_STATE_SUCCEEDED", logs(events).join("\n"));
  assert.ok(restarted, "the step said it was waiting for an executor");
  const waiting = events.filter((e) => e.log && /^waiting for an executor \(none is consuming the reward queue\): step 1 rewards \(8 candidates\) has waited \d+ s/.test(e.log.message));
  assert.ok(waiting.length >= 1, logs(events).join("\n"));
});

test("a killed redis-server is restarted on its port and AOF; the job rides it out and its events say so", { timeout: 120_000 }, async () => {
  const client = jobClient(mesh.apiAddr);
  const job = await jobs.submit(client, spec(3, 5));
  let killedRedis = false;
  const events = await follow(job.id, (e) => {
    if (!killedRedis && e.step?.step === 1) {
      killedRedis = true;
      mesh.redis!.process.kill("SIGKILL");
    }
  });
  const done = await jobs.get(client, job.id);
  client.close();
  assert.ok(killedRedis);
  assert.equal(done.state, "JOB_STATE_SUCCEEDED", logs(events).join("\n"));
  assert.deepEqual(events.filter((e) => e.step).map((e) => e.step!.step), [1, 2, 3], "no step lost or run twice");
  assert.ok(lines.some((l) => /^supervisor: redis-server exited \(signal SIGKILL\) after [\d.]+ s; restarting it in [\d.]+ s \(restart 1 of at most 3/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => /^supervisor: redis-server is back \(redis:\/\/127\.0\.0\.1:\d+/.test(l)), lines.join("\n"));
  const said = logs(events).join("\n");
  assert.match(said, /warn: service redis-server exited \(signal SIGKILL\)/, said);
  assert.match(said, /info: service redis-server is back/, said);
  assert.equal(mesh.restarts().redis, 1);
});
