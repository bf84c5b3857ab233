// End to end: the local mesh as real processes (Redis, api, rollout on onnxruntime, executor with
// Docker sandboxes, learner on jax-js) runs a short RL job on the shipped tiny model.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { createRedis, type JobEvent } from "@rlmesh/shared";
import { startLocalMesh, DEFAULT_MODEL_DIR, REPO_ROOT, type LocalMesh } from "@rlmesh/api/cli/local-mesh";
import { jobClient, jobs } from "@rlmesh/api/cli/job-client";
import { writeSolvableRows } from "./solvable-rows.js";
import { evaluateDashboard, loadDashboard, startPrometheus, type PrometheusInstance } from "./prometheus-harness.js";

// RLMESH_TEST_MODEL_DIR runs the same test on another model directory (e.g. a random-init one).
const MODEL_DIR = process.env.RLMESH_TEST_MODEL_DIR ?? DEFAULT_MODEL_DIR;
const STEPS = 2;
const PROMPTS = 4;
const GROUP = 8;

describe("RL job end to end", { timeout: 600_000 }, () => {
  let mesh: LocalMesh;
  let prom: PrometheusInstance;
  let dataset: string;
  before(async () => {
    mesh = await startLocalMesh({
      rollouts: 1,
      executors: 1,
      modelDir: MODEL_DIR,
      fixedPorts: false,
      stateDir: mkdtempSync(join(tmpdir(), "rlmesh-e2e-")),
    });
    // A real Prometheus scrapes every service of the mesh during the job (job label = service).
    const byService = new Map<string, string[]>();
    for (const p of mesh.processes) {
      const svc = p.name.replace(/-\d+$/, "");
      byService.set(svc, [...(byService.get(svc) ?? []), `127.0.0.1:${p.metricsPort}`]);
    }
    // Prompts the base policy solves greedily: sampled groups on them are mixed, so GRPO learns.
    const solvable = await writeSolvableRows(
      MODEL_DIR,
      join(REPO_ROOT, "datasets", "toy", "train.jsonl"),
      400,
      mkdtempSync(join(tmpdir(), "rlmesh-e2e-data-")),
      mesh.redisUrl,
    );
    assert.ok(solvable.rows.length >= 1, "the base model solves at least one of the first 400 training prompts");
    dataset = solvable.path;
    prom = await startPrometheus({ jobs: [...byService].map(([job, targets]) => ({ job, targets })) });
  });
  after(async () => {
    await prom?.stop();
    await mesh?.stop();
  });

  test("every candidate is rewarded exactly once and the policy version advances", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, {
      name: "e2e",
      modelDir: MODEL_DIR,
      seed: 7,
      steps: STEPS,
      promptsPerStep: PROMPTS,
      groupSize: GROUP,
      dataset: { path: dataset },
      evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), limit: 8 },
    });
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id)) events.push(e);
    const done = await jobs.get(client, job.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
    assert.equal(done.step, STEPS);

    const steps = events.filter((e) => e.step).map((e) => e.step!);
    assert.deepEqual(
      steps.map((s) => s.step),
      [1, 2],
    );
    for (const s of steps) assert.equal(s.candidates, PROMPTS * GROUP);
    assert.ok(done.policyVersion >= 1, `policy version advanced (got ${done.policyVersion})`);
    assert.ok(
      steps.some((s) => s.train && !s.train.skipped),
      "at least one step updated the policy",
    );
    const evals = events.filter((e) => e.eval);
    assert.equal(evals.length, 2, "eval before and after");

    // The reward queue holds exactly one completed job per candidate of each step.
    const redis = createRedis(mesh.redisUrl, { role: "worker" });
    const queue = new Queue("reward", { connection: redis });
    const completed = await queue.getJobs(["completed"], 0, -1);
    const mine = completed.filter((j) => j.id?.startsWith(`${job.id}-`) && !j.id.startsWith(`${job.id}-eval`));
    assert.equal(mine.length, STEPS * PROMPTS * GROUP);
    assert.equal(new Set(mine.map((j) => j.id)).size, mine.length);
    for (const j of mine) assert.ok(j.returnvalue.reward === 0 || j.returnvalue.reward === 1);
    const failed = await queue.getJobs(["failed"], 0, -1);
    assert.equal(failed.length, 0);
    await queue.close();
    redis.disconnect();
  });

  test("every dashboard panel's PromQL returns data from the mesh's real metrics", async () => {
    await prom.waitForScrapes(3);
    const { panels, variables } = await evaluateDashboard(prom, loadDashboard());
    const empty = panels.filter((p) => p.error || p.samples === 0).map((p) => `${p.panelTitle}: ${p.error ?? "no data"} (${p.evaluated})`);
    assert.deepEqual(empty, [], "panels without data");
    for (const v of variables) assert.ok(v.values.length > 0, `variable ${v.name} has values`);
  });
});
