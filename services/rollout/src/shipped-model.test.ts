/**
 * Checks on the shipped model (models/tiny-coder, or RLMESH_MODEL_DIR): it must exist; the
 * test fails loudly when it does not.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { loadDataset } from "@rlmesh/shared/datasets/index";
import { loadRolloutModel } from "./runtime/ort-rollout-engine.js";
import { createSessionWithFallback } from "./runtime/execution-provider.js";
import { OrtDenoiser } from "./runtime/ort-denoiser.js";
import { decodeBatch } from "./decoding/diffusion-decoder.js";
import { resolveDecodeParams } from "./decoding/decode-params.js";
import { REPO_ROOT as REPO } from "@rlmesh/shared/repo-paths";

const MODEL_DIR = process.env.RLMESH_MODEL_DIR ?? join(REPO, "models", "tiny-coder");

test("shipped model: cached decoding (threshold 1.0, exact refresh) reproduces uncached tokens", async () => {
  const model = await loadRolloutModel(MODEL_DIR);
  const { session } = await createSessionWithFallback(ort, model.modelBytes, { executionProvider: "cpu", intraOpNumThreads: 1 });
  const denoiser = new OrtDenoiser(ort, session, model.manifest);
  const rows = loadDataset(join(REPO, "datasets", "toy", "test-instances.jsonl")).slice(0, 3);
  const inputs = rows.map((r, i) => ({ prompt: model.codec!.encode(r.prompt), seed: 1000 + i }));
  const gen = Math.min(64, model.manifest.max_seq_len - Math.max(...inputs.map((x) => x.prompt.length)));
  for (const temperature of [0, 1]) {
    const base = { max_new_tokens: gen, block_length: 32, threshold: 1, temperature };
    const plain = await decodeBatch(denoiser, inputs, resolveDecodeParams({ ...base, cache: "none" }));
    for (const cache of ["prefix", "dual"] as const) {
      const cached = await decodeBatch(denoiser, inputs, resolveDecodeParams({ ...base, cache, cache_refresh: "step" }));
      assert.deepEqual(
        cached.map((r) => Array.from(r.rawResponse)),
        plain.map((r) => Array.from(r.rawResponse)),
        `${cache}, temperature ${temperature}`,
      );
    }
  }
});
