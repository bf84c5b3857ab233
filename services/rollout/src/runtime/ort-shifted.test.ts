/**
 * A shifted-logits model on onnxruntime: the graph-builder model with `shifted_logits: true` in
 * its manifest (the same ONNX graph read with Dream's convention). Cached decoding with an exact
 * refresh must give the uncached tokens at threshold 1.0 in every cache mode, and the shift must
 * change what is decoded (it is not ignored).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import ort from "onnxruntime-node";
import { OrtDenoiser } from "./ort-denoiser.js";
import type { PolicyModelConfig } from "@rlmesh/shared/model/index";
import { randomContractModel, SMALL_TEST_CONFIG } from "../testing/test-model.js";
import { decodeBatch } from "../decoding/diffusion-decoder.js";
import { resolveDecodeParams } from "../decoding/decode-params.js";
import { createSessionWithFallback } from "./execution-provider.js";

/**
 * Dream's block shape at test size: grouped-query attention (4 query heads over 2 K/V heads), q/k/v
 * bias, SwiGLU, its RoPE base, a Gather embedding and an untied head.
 */
const DREAM_LIKE: PolicyModelConfig = {
  ...SMALL_TEST_CONFIG,
  nHeads: 4,
  nKvHeads: 2,
  qkvBias: true,
  mlp: "swiglu",
  ropeTheta: 1_000_000,
  embedding: "gather",
};

async function denoisers(seed = 7, config: PolicyModelConfig = SMALL_TEST_CONFIG) {
  const { bytes, manifest } = randomContractModel(config, seed);
  const { session } = await createSessionWithFallback(ort, bytes, { executionProvider: "cpu", intraOpNumThreads: 1 });
  return {
    plain: new OrtDenoiser(ort, session, manifest),
    shifted: new OrtDenoiser(ort, session, { ...manifest, shifted_logits: true }),
  };
}

const inputs = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18]].map((prompt, i) => ({ prompt, seed: 40 + i }));
const raw = (out: Awaited<ReturnType<typeof decodeBatch>>) => out.map((r) => Array.from(r.rawResponse));

for (const [family, config, temperature] of [
  ["rlmesh", SMALL_TEST_CONFIG, 0],
  ["rlmesh", SMALL_TEST_CONFIG, 1],
  ["Dream-like GQA", DREAM_LIKE, 0],
  ["Dream-like GQA", DREAM_LIKE, 1],
] as const) {
  test(`ORT shifted-logits ${family} model: cached decoding (exact refresh) gives the uncached tokens at threshold 1.0 (temperature ${temperature})`, async () => {
    const { plain, shifted } = await denoisers(7, config);
    assert.equal(shifted.spec.shiftedLogits, true);
    const base = { max_new_tokens: 24, block_length: 8, threshold: 1, temperature, eos_fill: false };
    const uncached = raw(await decodeBatch(shifted, inputs, resolveDecodeParams({ ...base, cache: "none" })));
    assert.ok(new Set(uncached.flat()).size > 3, "the random model produces varied tokens");
    assert.notDeepEqual(uncached, raw(await decodeBatch(plain, inputs, resolveDecodeParams({ ...base, cache: "none" }))), "the shift changes the tokens");
    for (const cache of ["prefix", "dual"] as const) {
      const cached = raw(await decodeBatch(shifted, inputs, resolveDecodeParams({ ...base, cache, cache_refresh: "step" })));
      assert.deepEqual(cached, uncached, cache);
    }
  });
}

test("ORT shifted-logits model: with the default block refresh every cache mode fills every position and a batch decodes as each alone", async () => {
  const { shifted } = await denoisers(3);
  for (const cache of ["none", "prefix", "dual"] as const) {
    const params = resolveDecodeParams({ max_new_tokens: 16, block_length: 8, threshold: 0.6, temperature: 1, cache });
    const together = await decodeBatch(shifted, inputs, params);
    for (let i = 0; i < inputs.length; i++) {
      assert.ok(!together[i]!.rawResponse.includes(shifted.spec.maskId), `${cache} #${i} fully decoded`);
      const [alone] = await decodeBatch(shifted, [inputs[i]!], params);
      assert.deepEqual(Array.from(alone!.rawResponse), Array.from(together[i]!.rawResponse), `${cache} #${i}`);
    }
  }
});
