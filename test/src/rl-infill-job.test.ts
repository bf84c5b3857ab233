// RL on infilling through the real mesh (Redis, api, a rollout worker on onnxruntime serving
// RolloutService.Infill, an executor with Docker sandboxes, the learner on jax-js): a job with
// task "infill" fills whole-line middles cut from the toy train split, the sandbox runs each WHOLE
// program, and the learner trains on prefix | middle | suffix; versions advance step by step.
// It runs on the shipped base at a fixed length, on the train rows whose middle (as the job cuts
// it) is exactly that long, i.e. at the oracle length, where the base fills about 60 % of middles,
// so groups have mixed rewards. The variable-length path of Infill is covered by
// rollout-infill-grpc.test.ts.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobEvent } from "@rlmesh/shared";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { parseDataset } from "@rlmesh/shared/datasets/index";
import { infillRowsFromRows } from "@rlmesh/shared/infill/index";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";

const MODEL_DIR = DEFAULT_MODEL_DIR;
const STEPS = 2;
const SEED = 2;
const MIDDLE_TOKENS = 14;
const EVAL_LIMIT = 8;

describe("an infill RL job on the mesh", { timeout: 600_000 }, () => {
  let mesh: LocalMesh;
  let dataset: string;
  before(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "rlmesh-infill-job-"));
    // The train rows whose middle, cut with the job's seed, is MIDDLE_TOKENS tokens long.
    const tok = await loadTokenizer(join(MODEL_DIR, "tokenizer.json"));
    const lines = readFileSync(join(REPO_ROOT, "datasets", "toy", "train.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "");
    const cut = infillRowsFromRows(parseDataset(lines.join("\n")), { seed: SEED });
    const keep = lines.filter((_, i) => tok.encode(cut[i]!.middle).length === MIDDLE_TOKENS).slice(0, 64);
    assert.ok(keep.length >= 16, `${keep.length} train rows with a ${MIDDLE_TOKENS}-token middle`);
    dataset = join(stateDir, "train-middle-14.jsonl");
    writeFileSync(dataset, keep.join("\n") + "\n");
    mesh = await startLocalMesh({ rollouts: 1, executors: 1, modelDir: MODEL_DIR, fixedPorts: false, stateDir });
  });
  after(async () => {
    await mesh?.stop();
  });

  test("task infill: Infill rollouts, whole programs scored in the sandbox, prefix | middle | suffix trained, versions advance", async (t) => {
    const client = jobClient(mesh.apiAddr);
    const submitted = await jobs.submit(client, {
      name: "infill-rl",
      modelDir: MODEL_DIR,
      seed: SEED,
      steps: STEPS,
      promptsPerStep: 4,
      groupSize: 4,
      task: "infill",
      infill: { initialLength: MIDDLE_TOKENS, maxLength: MIDDLE_TOKENS, variableLength: false },
      dataset: { path: dataset },
      evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), limit: EVAL_LIMIT },
      grpo: { lr: 1e-3, warmupSteps: 0 },
    });
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, submitted.id)) events.push(e);
    const done = await jobs.get(client, submitted.id);
    client.close();
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((x) => x.log || x.state)));
    const steps = events.filter((x) => x.step).map((x) => x.step!);
    const rewards = steps.map((s) => s.rewardMean);
    const evals = events.filter((x) => x.eval).map((x) => x.eval!);
    t.diagnostic(`step rewards ${JSON.stringify(rewards)}, held-out infill pass@1 ${JSON.stringify(evals.map((e) => [Number(e.step), e.passAt1, e.n]))}`);
    // Each step's infills come from the version the step before left; a step that trained makes
    // the next version (one whose groups all had equal rewards trains nothing and keeps it).
    let version = 0;
    for (const s of steps) {
      const trained = s.train !== undefined && s.train !== null && !s.train.skipped;
      assert.equal(Number(s.samplesPolicyVersion), version, `step ${s.step} infilled with v${version}: ${JSON.stringify(steps)}`);
      if (trained) version++;
      assert.equal(Number(s.policyVersion), version, `step ${s.step} (trained: ${trained}): ${JSON.stringify(steps)} events ${JSON.stringify(events.filter((x) => x.log))}`);
    }
    assert.deepEqual(steps.map((s) => Number(s.step)), [1, 2]);
    for (const s of steps) assert.equal(Number(s.candidates), 4 * 4);
    // Rewards are the sandbox's verdicts on the whole programs: the model solves some
    // middles and not others (an all-0 or all-1 run would mean the programs were not the cut rows').
    assert.ok(rewards.some((r) => r > 0) && rewards.some((r) => r < 1), `rewards ${JSON.stringify(rewards)}`);
    assert.ok(steps.some((s) => Number(s.trainedGroups) > 0 && s.train && Number(s.train.numSamples) > 0), "some step trained on informative groups");
    // The held-out eval is infilling too (greedy, the eval split's rows cut), at version 0 and at the end.
    assert.deepEqual(
      evals.map((e) => [Number(e.step), Number(e.policyVersion), Number(e.n)]),
      [
        [0, 0, EVAL_LIMIT],
        [STEPS, version, EVAL_LIMIT],
      ],
    );
  });
});
