// End to end: the local mesh as real processes (Redis, api, rollout on onnxruntime, executor with
// Docker sandboxes, learner on jax-js) runs a short RL job on the shipped tiny model.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { createClient, createRedis, loadProto, type JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
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
      extraEvalDatasets: [{ path: join(REPO_ROOT, "datasets", "toy", "test-compositional.jsonl"), limit: 4 }],
      evalSamples: 2,
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
    // Before and after: both lines, greedy and sampled, with their response counts and intervals.
    const evals = events.filter((e) => e.eval).map((e) => e.eval!);
    assert.deepEqual(
      evals.map((e) => `${e.step}:${e.split}:${e.mode}:${e.n}:${e.responses}`),
      [0, STEPS].flatMap((s) => [`${s}:eval:greedy:8:8`, `${s}:eval:sampled:8:16`, `${s}:test-compositional:greedy:4:4`, `${s}:test-compositional:sampled:4:8`]),
    );
    for (const e of evals) assert.ok(e.ciLow <= e.passAt1 && e.passAt1 <= e.ciHigh && e.ciHigh > 0, JSON.stringify(e));
    for (const s of steps) assert.ok(s.informativeFraction >= 0 && s.informativeFraction <= 1);

    // The reward queue holds exactly one completed job per candidate of each step.
    const redis = createRedis(mesh.redisUrl, { role: "worker" });
    const queue = new Queue("reward", { connection: redis });
    const completed = await queue.getJobs(["completed"], 0, -1);
    const mine = completed.filter((j) => j.id?.startsWith(`${job.id}-`) && !j.id.startsWith(`${job.id}-eval`));
    const evalJobs = completed.filter((j) => j.id?.startsWith(`${job.id}-eval`));
    assert.equal(evalJobs.length, 2 * (8 + 16 + 4 + 8), "one reward job per eval response");
    assert.equal(mine.length, STEPS * PROMPTS * GROUP);
    assert.equal(new Set(mine.map((j) => j.id)).size, mine.length);
    for (const j of mine) assert.ok(j.returnvalue.reward === 0 || j.returnvalue.reward === 1);
    const failed = await queue.getJobs(["failed"], 0, -1);
    assert.equal(failed.length, 0);
    await queue.close();
    redis.disconnect();
  });

  test("overlap + dynamic sampling: step k+1 is generated while step k trains, one version behind; oversampled groups are scored, the limit trained", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, {
      name: "e2e-overlap",
      modelDir: MODEL_DIR,
      seed: 9,
      steps: 3,
      promptsPerStep: 2,
      groupSize: 4,
      overlap: true,
      oversample: 2,
      dataset: { path: dataset },
    });
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id)) events.push(e);
    const done = await jobs.get(client, job.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
    const steps = events.filter((e) => e.step).map((e) => e.step!);
    assert.deepEqual(steps.map((s) => Number(s.step)), [1, 2, 3]);
    const before = Number(steps[0]!.samplesPolicyVersion);
    // Step k+1's rollout started when step k began, i.e. on the version step k-1 left.
    const after = [before, ...steps.map((s) => Number(s.policyVersion))];
    for (let k = 1; k < steps.length; k++) assert.equal(Number(steps[k]!.samplesPolicyVersion), after[k - 1], `step ${k + 1}`);
    // Dynamic sampling: 2 × 2 prompts rolled out and rewarded, 2 groups trained.
    for (const s of steps) {
      assert.equal(s.candidates, 16);
      assert.equal(s.trainedGroups, 2);
    }
  });

  test("a time budget stops the job after the step that crosses it, with the final eval", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, {
      name: "e2e-budget",
      modelDir: MODEL_DIR,
      seed: 8,
      steps: 50,
      promptsPerStep: 2,
      groupSize: 2,
      maxMinutes: 0.0001,
      dataset: { path: dataset },
      evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), limit: 2 },
    });
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id)) events.push(e);
    const done = await jobs.get(client, job.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", `${done.error} ${JSON.stringify(events.filter((e) => e.log || e.state))}`);
    assert.equal(done.step, 1, "one step runs, the budget stops the next");
    assert.ok(events.some((e) => e.log && /time budget of 0\.0001 min reached after step 1/.test(e.log.message)));
    assert.deepEqual(
      events.filter((e) => e.eval).map((e) => Number(e.eval!.step)),
      [0, 1],
      "the final eval runs on the last completed step",
    );
  });

  test("every dashboard panel's PromQL returns data from the mesh's real metrics", async () => {
    // The Infill panels need Infill traffic: two fixed-length Infill calls on the mesh's rollout
    // worker (at the policy it serves), then the scrapes.
    const addr = mesh.processes.find((p) => p.name === "rollout-0")!.grpcAddr!;
    const rollout = createClient(loadProto().proto.rlmesh.v1.RolloutService, addr);
    try {
      const served = await new Promise<{ policyJobId: string }>((resolve, reject) =>
        rollout.getModelInfo({}, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      for (let i = 0; i < 2; i++) {
        const res = await new Promise<{ samples: unknown[] }>((resolve, reject) =>
          rollout.infill(
            {
              items: [{ id: `dash-${i}`, prefix: "def f(x):\n", suffix: "\n", initialLength: 8 }],
              samplesPerItem: 1,
              variableLength: false,
              policyJobId: served.policyJobId,
            },
            { deadline: new Date(Date.now() + 60_000) },
            (err, r) => (err ? reject(err) : resolve(r!)),
          ),
        );
        assert.equal(res.samples.length, 1);
      }
    } finally {
      rollout.close();
    }
    // rate() needs two scrapes of the new series (1 s apart) inside its 30 s window.
    for (let i = 0; i < 100; i++) {
      const seen = await prom.query("count_over_time(rlmesh_rollout_infill_requests_total[30s])");
      if (seen.some((x) => Number(x.value[1]) >= 2)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await prom.waitForScrapes(3);
    const { panels, variables } = await evaluateDashboard(prom, loadDashboard());
    const empty = panels.filter((p) => p.error || p.samples === 0).map((p) => `${p.panelTitle}: ${p.error ?? "no data"} (${p.evaluated})`);
    assert.deepEqual(empty, [], "panels without data");
    for (const v of variables) assert.ok(v.values.length > 0, `variable ${v.name} has values`);
  });
});
