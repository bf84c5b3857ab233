// Fault tolerance of a running RL job on the local mesh (real processes): SIGKILL an executor, a
// rollout worker and the learner mid-step, and restart Redis (AOF on) mid-job. The job must
// complete with contiguous steps, one reward per candidate, none lost or counted twice.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { createRedis, type JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";

const STEPS = 5;
const PROMPTS = 4;
const GROUP = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("RL job under faults", { timeout: 900_000 }, () => {
  let mesh: LocalMesh;
  before(async () => {
    mesh = await startLocalMesh({
      rollouts: 1,
      executors: 2,
      modelDir: DEFAULT_MODEL_DIR,
      fixedPorts: false,
      stateDir: mkdtempSync(join(tmpdir(), "rlmesh-faults-")),
      // A killed executor's job is picked up again within a few seconds.
      env: { RLMESH_EXECUTOR_LOCK_MS: "4000", RLMESH_EXECUTOR_STALLED_INTERVAL_MS: "1000" },
    });
  });
  after(async () => {
    await mesh?.stop();
  });

  test("SIGKILLed executor, rollout worker and learner, and a Redis restart: the job completes, rewards exactly once", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, {
      name: "faults",
      modelDir: DEFAULT_MODEL_DIR,
      seed: 11,
      steps: STEPS,
      promptsPerStep: PROMPTS,
      groupSize: GROUP,
      dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
    });
    const faults: string[] = [];
    const inject = async (step: number) => {
      // Each fault hits the step after `step`, while its rollout / rewards / training run.
      if (step === 1) {
        await sleep(300);
        await mesh.kill("executor-0", "SIGKILL");
        faults.push("executor-0 SIGKILL");
        await mesh.restart("executor-0");
      } else if (step === 2) {
        await mesh.kill("rollout-0", "SIGKILL");
        faults.push("rollout-0 SIGKILL");
        await sleep(1000);
        await mesh.restart("rollout-0");
      } else if (step === 3) {
        await mesh.kill("learner", "SIGKILL");
        faults.push("learner SIGKILL");
        await sleep(2000);
        await mesh.restart("learner");
      } else if (step === 4) {
        await mesh.redis!.stop();
        faults.push("redis restart");
        await sleep(500);
        await mesh.redis!.restart();
      }
    };
    const events: JobEvent[] = [];
    const watchClient = jobClient(mesh.apiAddr);
    let pending: Promise<void> = Promise.resolve();
    for (;;) {
      try {
        for await (const e of jobs.watch(watchClient, job.id, events.length)) {
          events.push(e);
          if (e.step) pending = pending.then(() => inject(e.step!.step));
        }
        break;
      } catch {
        // The watch stream breaks while Redis restarts; resume from the last offset.
        await sleep(500);
      }
    }
    await pending;
    const done = await jobs.get(client, job.id);
    client.close();
    watchClient.close();
    assert.deepEqual(faults, ["executor-0 SIGKILL", "rollout-0 SIGKILL", "learner SIGKILL", "redis restart"]);
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
    const steps = events.filter((e) => e.step).map((e) => e.step!.step);
    assert.deepEqual(steps, [1, 2, 3, 4, 5], "step numbering stays contiguous, no step twice");
    for (const e of events.filter((x) => x.step)) assert.equal(e.step!.candidates, PROMPTS * GROUP);

    const redis = createRedis(mesh.redisUrl, { role: "worker" });
    const queue = new Queue("reward", { connection: redis });
    const completed = (await queue.getJobs(["completed"], 0, -1)).filter((j) => j.id?.startsWith(`${job.id}-`));
    assert.equal(completed.length, STEPS * PROMPTS * GROUP, "exactly one completed reward job per candidate");
    assert.equal(new Set(completed.map((j) => j.id)).size, completed.length);
    assert.equal((await queue.getJobs(["failed", "waiting", "active", "delayed"], 0, -1)).length, 0, "nothing lost or left queued");
    await queue.close();
    redis.disconnect();
  });
});
