import { test } from "node:test";
import assert from "node:assert/strict";
import ort from "onnxruntime-node";
import { OrtDenoiser } from "./ort-denoiser.js";
import { randomContractModel } from "../testing/test-model.js";
import { decodeBatch } from "../decoding/diffusion-decoder.js";
import { resolveDecodeParams } from "../decoding/decode-params.js";
import { createSessionWithFallback } from "./execution-provider.js";

async function denoiser(seed = 7) {
  const { bytes, manifest } = randomContractModel(undefined, seed);
  const { session } = await createSessionWithFallback(ort, bytes, { executionProvider: "cpu", intraOpNumThreads: 1 });
  return new OrtDenoiser(ort, session, manifest);
}

const prompts = [
  [5, 6, 7, 8, 9],
  [10, 11],
  [12, 13, 14, 15, 16, 17, 18],
];
const inputs = prompts.map((prompt, i) => ({ prompt, seed: 40 + i }));

for (const temperature of [0, 1]) {
  test(`ORT model: cached decoding with exact refresh reproduces uncached tokens (threshold 1.0, temperature ${temperature})`, async () => {
    const model = await denoiser();
    const base = { max_new_tokens: 24, block_length: 8, threshold: 1, temperature, eos_fill: false };
    const plain = await decodeBatch(model, inputs, resolveDecodeParams({ ...base, cache: "none" }));
    assert.ok(new Set(plain.flatMap((r) => Array.from(r.rawResponse))).size > 3, "the random model produces varied tokens");
    for (const cache of ["prefix", "dual"] as const) {
      const cached = await decodeBatch(model, inputs, resolveDecodeParams({ ...base, cache, cache_refresh: "step" }));
      assert.deepEqual(
        cached.map((r) => Array.from(r.rawResponse)),
        plain.map((r) => Array.from(r.rawResponse)),
        cache,
      );
    }
  });
}

test("ORT model: a cached forward with an exact cache gives the full forward's block logits", async () => {
  const model = await denoiser(3);
  const { nLayers: L, nHeads: H, headDim: Dh, vocabSize: V } = model.spec;
  const N = 20;
  const ids = Int32Array.from({ length: N }, (_, i) => (i * 7 + 3) % V);
  const positions = Int32Array.from({ length: N }, (_, i) => i);
  const full = await model.forward({
    batch: 1,
    length: N,
    pastLength: 0,
    ids,
    positions,
    attention: new Float32Array(N).fill(1),
    wantPresent: true,
  });
  // Dual layout: block [8, 12) current; prefix [0, 8) and suffix [12, 20) cached.
  const keep = [...Array.from({ length: 8 }, (_, i) => i), ...Array.from({ length: 8 }, (_, i) => 12 + i)];
  const pick = (t: Float32Array) => {
    const out = new Float32Array(H * keep.length * Dh);
    for (let h = 0; h < H; h++)
      keep.forEach((s, j) => out.set(t.subarray((h * N + s) * Dh, (h * N + s + 1) * Dh), (h * keep.length + j) * Dh));
    return out;
  };
  const past = { keys: full.present!.keys.map(pick), values: full.present!.values.map(pick) };
  assert.equal(past.keys.length, L);
  const cached = await model.forward({
    batch: 1,
    length: 4,
    pastLength: 16,
    ids: ids.slice(8, 12),
    positions: positions.slice(8, 12),
    attention: new Float32Array(20).fill(1),
    past,
    wantPresent: false,
  });
  let maxDiff = 0;
  for (let i = 0; i < 4 * V; i++) maxDiff = Math.max(maxDiff, Math.abs(cached.logits[i]! - full.logits[8 * V + i]!));
  assert.ok(maxDiff < 1e-3, `max |Δlogit| = ${maxDiff}`);
});

test("ORT model: batched sequences of different lengths decode as they do alone", async () => {
  const model = await denoiser();
  for (const cache of ["none", "prefix", "dual"] as const) {
    const params = resolveDecodeParams({ max_new_tokens: 16, block_length: 8, threshold: 0.6, temperature: 1, cache });
    const together = await decodeBatch(model, inputs, params);
    for (let i = 0; i < inputs.length; i++) {
      const [alone] = await decodeBatch(model, [inputs[i]!], params);
      assert.deepEqual(Array.from(alone!.rawResponse), Array.from(together[i]!.rawResponse), `${cache} #${i}`);
    }
  }
});

test("an unavailable execution provider falls back to CPU and says why", async () => {
  const { bytes } = randomContractModel();
  const lines: string[] = [];
  const log = {
    debug() {},
    info: (m: string, f?: Record<string, unknown>) => lines.push(`info ${m} ${JSON.stringify(f)}`),
    warn: (m: string, f?: Record<string, unknown>) => lines.push(`warn ${m} ${JSON.stringify(f)}`),
    error() {},
    child() {
      return log;
    },
  };
  const created = await createSessionWithFallback(ort, bytes, { executionProvider: "cuda", intraOpNumThreads: 1 }, log);
  assert.equal(created.provider, "cpu");
  assert.ok(created.fallbackReason && created.fallbackReason.length > 0);
  assert.ok(lines.some((l) => l.startsWith("warn execution provider unavailable")));
  assert.ok(lines.some((l) => l.includes('"execution_provider":"cpu"')));
});
