// Jobs on one mesh (real processes: Redis, api, rollout on onnxruntime, executor with Docker
// sandboxes, learner on jax-js): each job trains the model its spec names from version 0, two
// jobs submitted at once queue, and a model other than the workers serve is refused at submit
// naming both (the learner's own check at StartJob is tested in job-trainers.test.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { JobEvent, JobSpecIn } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { writeRandomModelDir } from "@rlmesh/learner/testing/random-model-dir";

const STEPS = 2;
const EVAL_LIMIT = 16;

const spec = (name: string): JobSpecIn => ({
  name,
  modelDir: DEFAULT_MODEL_DIR,
  seed: 3,
  steps: STEPS,
  promptsPerStep: 2,
  groupSize: 4,
  dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
  evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), limit: EVAL_LIMIT },
  // The learner's LR is large enough that two steps move the greedy eval of some prompts.
  grpo: { lr: 1e-3, warmupSteps: 0 },
});

async function watchAll(mesh: LocalMesh, id: string): Promise<JobEvent[]> {
  const client = jobClient(mesh.apiAddr);
  const events: JobEvent[] = [];
  try {
    for await (const e of jobs.watch(client, id)) events.push(e);
  } finally {
    client.close();
  }
  return events;
}

describe("jobs on one mesh", { timeout: 600_000 }, () => {
  let mesh: LocalMesh;
  let stateDir: string;
  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), "rlmesh-jobs-"));
    mesh = await startLocalMesh({ rollouts: 1, executors: 1, modelDir: DEFAULT_MODEL_DIR, fixedPorts: false, stateDir });
  });
  after(async () => {
    await mesh?.stop();
  });

  test("two identical jobs submitted at once: the second queues, then starts from the same weights at version 0 and reports the same step-0 eval", async (t) => {
    const client = jobClient(mesh.apiAddr);
    const a = await jobs.submit(client, spec("same-a"));
    const b = await jobs.submit(client, spec("same-b"));
    const bEarly = await jobs.get(client, b.id);
    client.close();
    assert.equal(bEarly.state, "JOB_STATE_QUEUED", "one job runs at a time");
    const [ea, eb] = await Promise.all([watchAll(mesh, a.id), watchAll(mesh, b.id)]);
    const check = jobClient(mesh.apiAddr);
    const [da, db] = [await jobs.get(check, a.id), await jobs.get(check, b.id)];
    check.close();
    for (const [d, e] of [
      [da, ea],
      [db, eb],
    ] as const) {
      assert.equal(d.state, "JOB_STATE_SUCCEEDED", JSON.stringify(e.filter((x) => x.log || x.state)));
      // Every job counts its policy versions from 0: step k's samples come from version k-1.
      const steps = e.filter((x) => x.step).map((x) => x.step!);
      assert.deepEqual(
        steps.map((s) => [Number(s.step), Number(s.samplesPolicyVersion), Number(s.policyVersion)]),
        [
          [1, 0, 1],
          [2, 1, 2],
        ],
      );
      assert.ok(
        e.some((x) => x.log && x.log.message.startsWith(`learner: job started from model_dir ${DEFAULT_MODEL_DIR} (`) && / at policy v0; weights on rollout-0$/.test(x.log.message)),
        JSON.stringify(e.filter((x) => x.log)),
      );
    }
    // b waited for a: queued with a's name, RUNNING only after a ended.
    const queued = eb.findIndex((x) => x.log?.message.startsWith(`queued: job ${a.id} is running`));
    const bRunning = eb.find((x) => x.state?.to === "JOB_STATE_RUNNING")!;
    const aDone = ea.find((x) => x.state?.to === "JOB_STATE_SUCCEEDED")!;
    assert.ok(queued >= 0 && queued < eb.indexOf(bRunning), JSON.stringify(eb.filter((x) => x.log || x.state)));
    assert.ok(Number(bRunning.timeMs) >= Number(aDone.timeMs), "b starts after a ends");

    const evals = (e: JobEvent[]) => e.filter((x) => x.eval).map((x) => x.eval!);
    const [a0, b0] = [evals(ea)[0]!, evals(eb)[0]!];
    assert.deepEqual([Number(a0.step), Number(a0.policyVersion), Number(b0.step), Number(b0.policyVersion)], [0, 0, 0, 0]);
    assert.equal(b0.passAt1, a0.passAt1, "the second job starts from the weights the first started from, not the ones it left");
    assert.equal(b0.n, EVAL_LIMIT);
    // What else the two runs share (reported, not asserted: see the determinism note).
    const summary = (e: JobEvent[]) => ({
      rewards: e.filter((x) => x.step).map((x) => x.step!.rewardMean),
      losses: e.filter((x) => x.step).map((x) => x.step!.train?.loss),
      evals: evals(e).map((x) => x.passAt1),
    });
    t.diagnostic(`job a: ${JSON.stringify(summary(ea))}`);
    t.diagnostic(`job b: ${JSON.stringify(summary(eb))}`);
  });

  test("grpo.ema_decay: the trained weights are evaluated once more (last_iterate), then the moving average becomes the job's final weights as a new version, which the final eval scores", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, { ...spec("ema"), grpo: { lr: 1e-3, warmupSteps: 0, emaDecay: 0.5 } });
    const e = await watchAll(mesh, job.id);
    const done = await jobs.get(client, job.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(e.filter((x) => x.log || x.state)));
    const steps = e.filter((x) => x.step).map((x) => [Number(x.step!.step), Number(x.step!.policyVersion)]);
    assert.deepEqual(steps, [
      [1, 1],
      [2, 2],
    ]);
    const evals = e.filter((x) => x.eval && x.eval.split === "eval").map((x) => [Number(x.eval!.step), x.eval!.mode, Number(x.eval!.policyVersion)]);
    assert.deepEqual(evals, [
      [0, "greedy", 0],
      [2, "last_iterate", 2],
      [2, "greedy", 3],
    ]);
    assert.ok(
      e.some((x) => x.log?.message === "final weights: the moving average of the policy (ema_decay 0.5, 2 updates) as policy v3"),
      JSON.stringify(e.filter((x) => x.log)),
    );
    assert.equal(Number(done.policyVersion), 3);
  });

  test("a model other than the rollout workers serve is refused at submit naming both; the next job still runs", async () => {
    // Same tokenizer and context as the shipped model (the api's dataset checks would pass), other layers.
    const other = await writeRandomModelDir(join(stateDir, "model-ci"), "ci", 3, 320);
    const client = jobClient(mesh.apiAddr);
    await assert.rejects(jobs.submit(client, { ...spec("other-arch"), modelDir: other, evalDataset: null }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.FAILED_PRECONDITION, err.details);
      assert.match(err.details, new RegExp(`^spec\\.model_dir: ${other} is model "random-ci" \\(weights sha256 [0-9a-f]{12}…\\), but rollout worker rollout-0 serves "tiny-coder"`));
      return true;
    });
    const ok = await jobs.submit(client, { ...spec("after"), steps: 1, evalDataset: null });
    await watchAll(mesh, ok.id);
    assert.equal((await jobs.get(client, ok.id)).state, "JOB_STATE_SUCCEEDED");
    client.close();
  });
});
