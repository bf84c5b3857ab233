/**
 * Decode traces through the real runtime: the shipped tiny-coder on onnxruntime in decode
 * worker threads, the proto adapter (DecodingParams.trace -> Sample.commit_steps), every cache
 * mode the model supports.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import type { GenerateRequest } from "@rlmesh/shared";
import { loadRolloutModel, OrtRolloutEngine } from "./ort-rollout-engine.js";
import { ProtoRolloutEngine } from "../service/proto-rollout-engine.js";

const MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder");
const PROMPTS = ["Write a function f(x) that returns x plus 3.", "Write a program that reads an integer n and prints n times 2."];

test("tiny-coder on onnxruntime: commit_steps per response token in every cache mode, absent unless traced", { timeout: 120_000 }, async () => {
  const model = await loadRolloutModel(MODEL_DIR);
  const engine = await OrtRolloutEngine.create({ model, replicas: 2, intraOpNumThreads: 1, maxBatch: 2 });
  const proto = new ProtoRolloutEngine(engine);
  try {
    const req = (params: GenerateRequest["params"]): GenerateRequest =>
      ({ prompts: PROMPTS.map((text, i) => ({ id: String(i), text })), samplesPerPrompt: 2, params }) as GenerateRequest;
    for (const cache of ["none", "prefix", "dual"]) {
      const params = { temperature: 1, topP: 0.95, maxNewTokens: 48, blockLength: 16, threshold: 0.9, cache, seed: 5 };
      const plain = (await proto.generate(req(params))).samples ?? [];
      const traced = (await proto.generate(req({ ...params, trace: true }))).samples ?? [];
      assert.equal(traced.length, 4);
      traced.forEach((s, i) => {
        const what = `${cache} sample ${i}`;
        assert.equal(plain[i]!.commitSteps, undefined, `${what}: no commit_steps without trace`);
        assert.deepEqual(s.tokenIds, plain[i]!.tokenIds, `${what}: tracing does not change the tokens`);
        const c = s.commitSteps ?? [];
        assert.equal(c.length, s.tokenIds!.length, `${what}: one commit step per token`);
        assert.ok(c.length > 0);
        for (const step of c) assert.ok(Number.isInteger(step) && step >= 1 && step <= s.nfe!, `${what}: step ${step} outside [1, nfe ${s.nfe}]`);
      });
    }
    // One token per step, no cache: the steps of a sample are distinct (a permutation of 1..n
    // when it ran to max_new_tokens; EOS fill can end it earlier).
    const one = await proto.generate(req({ temperature: 0.7, maxNewTokens: 32, blockLength: 8, threshold: 1, cache: "none", seed: 3, trace: true }));
    for (const s of one.samples ?? []) {
      const c = s.commitSteps!;
      assert.equal(new Set(c).size, c.length, "each step committed one position");
    }
  } finally {
    await engine.close();
  }
});
