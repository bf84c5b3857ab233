// End to end on an imported Dream-type checkpoint: a tiny random checkpoint in the Hugging Face
// layout, imported by import-hf (shifted logits, GQA, q/k/v bias, SwiGLU, Gather embedding) and
// taught two answers (dream-checkpoint.ts), runs an RL job through the local mesh as real
// processes — rollout on onnxruntime with the dual cache, rewards in Docker sandboxes, TrainStep on
// jax-js with shifted log-likelihoods, weight push — and the policy version advances. At submit,
// the mesh refuses a model other than the one its workers serve, and a broken copy of it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { TAUGHT_TASK, taughtDreamModel, type TaughtDream } from "./dream-checkpoint.js";

const STEPS = 2;
const PROMPTS = 2;
const GROUP = 4;

describe("RL job on an imported Dream-type checkpoint", { timeout: 300_000 }, () => {
  let mesh: LocalMesh;
  let model: TaughtDream;
  let root: string;
  let dataset: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), "rlmesh-dream-e2e-"));
    model = await taughtDreamModel(root, { steps: 150 });
    dataset = join(root, "print-one.jsonl");
    writeFileSync(dataset, JSON.stringify(TAUGHT_TASK) + "\n");
    mesh = await startLocalMesh({ rollouts: 1, executors: 1, modelDir: model.dir, fixedPorts: false, stateDir: join(root, "state") });
  });
  after(async () => {
    await mesh?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the imported model is a Dream one: shifted logits, grouped-query attention, Gather embedding; SFT taught it", () => {
    const m = model.imported.manifest;
    assert.equal(m.shifted_logits, true);
    assert.equal(m.embedding, "gather");
    assert.ok(m.n_kv_heads !== undefined && m.n_kv_heads < m.n_heads, `GQA: ${m.n_kv_heads}/${m.n_heads}`);
    assert.ok(model.losses[1] < model.losses[0] / 5, `SFT loss ${model.losses[0]} -> ${model.losses[1]}`);
  });

  test("rollout, rewards, TrainStep and weight push run; versions advance and the policy is updated", async () => {
    const client = jobClient(mesh.apiAddr);
    const job = await jobs.submit(client, {
      name: "dream-e2e",
      modelDir: model.dir,
      seed: 5,
      steps: STEPS,
      promptsPerStep: PROMPTS,
      groupSize: GROUP,
      dataset: { path: dataset },
      evalDataset: null,
      decoding: { maxNewTokens: model.responseBudget, blockLength: 8, temperature: 1, cache: "dual" },
      grpo: { lr: 1e-3, warmupSteps: 0 },
    });
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id)) events.push(e);
    const done = await jobs.get(client, job.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
    const steps = events.filter((e) => e.step).map((e) => e.step!);
    assert.deepEqual(
      steps.map((s) => [Number(s.step), Number(s.samplesPolicyVersion), Number(s.policyVersion)]),
      [
        [1, 0, 1],
        [2, 1, 2],
      ],
    );
    for (const s of steps) assert.equal(s.candidates, PROMPTS * GROUP);
    // Both answers were sampled: rewards are mixed, so groups are informative and GRPO updates.
    const rewards = steps.map((s) => s.rewardMean);
    assert.ok(rewards.some((r) => r > 0 && r < 1), `mixed rewards per step: ${JSON.stringify(rewards)}`);
    const updated = steps.filter((s) => s.train && !s.train.skipped);
    assert.ok(updated.length >= 1, JSON.stringify(steps.map((s) => s.train)));
    for (const s of updated) assert.ok(Number.isFinite(s.train!.loss) && s.train!.gradNorm > 0, JSON.stringify(s.train));
    assert.ok(
      events.some((e) => e.log && /learner: job started from model_dir .* \(dream-tiny\) at policy v0; weights on rollout-0$/.test(e.log.message)),
      JSON.stringify(events.filter((e) => e.log)),
    );
    assert.equal(done.policyVersion, STEPS);
  });

  test("at submit: another model than the workers serve is FAILED_PRECONDITION naming both; a broken copy is INVALID_ARGUMENT naming the field", async () => {
    const client = jobClient(mesh.apiAddr);
    const base = { steps: 1, promptsPerStep: 1, groupSize: 2, dataset: { path: dataset }, evalDataset: null, decoding: { maxNewTokens: model.responseBudget } };
    // The imported, untaught model: same architecture and name, other weights.
    await assert.rejects(jobs.submit(client, { ...base, modelDir: model.imported.dir }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.FAILED_PRECONDITION, err.details);
      assert.match(err.details, /^spec\.model_dir: .*imported is model "dream-tiny" \(weights sha256 [0-9a-f]{12}…\), but rollout worker rollout-0 serves "dream-tiny" \(weights sha256 [0-9a-f]{12}…\): the same name with other weights/);
      return true;
    });
    const broken = join(root, "broken");
    cpSync(model.dir, broken, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(broken, "manifest.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(broken, "manifest.json"), JSON.stringify({ ...manifest, vocab_size: 999 }));
    await assert.rejects(jobs.submit(client, { ...base, modelDir: broken }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /^spec\.model_dir: .*broken: .*manifest says 999 \(manifest\.json vocab_size/);
      return true;
    });
    client.close();
  });
});
