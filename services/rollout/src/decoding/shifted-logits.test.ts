/**
 * Shifted logits (Dream's convention: the logit at position i predicts token i + 1). A shifted
 * view of a reference transformer — its row i is the unshifted model's row i + 1 — must decode
 * exactly what the unshifted model decodes, in every unmasking order, commit rule and cache
 * mode: that holds only if the decoder reads position j from row j - 1 everywhere, including
 * the first position of a cached block (whose row lies before the block).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBatch, type ForwardInfo } from "./diffusion-decoder.js";
import { resolveDecodeParams, type DecodeParamsInput } from "./decode-params.js";
import { createReferenceDenoiser } from "./reference-denoiser.js";
import { UNMASK_ALGS } from "./sampling.js";
import type { Denoiser, DenoiserSpec, ForwardInput } from "./denoiser.js";

const SPEC: DenoiserSpec = { vocabSize: 12, nLayers: 2, nHeads: 2, headDim: 4, maxSeqLen: 64, maskId: 11, padId: 0, eosId: 1 };

/**
 * The same network with its output rows moved one position earlier: row t = `inner`'s row
 * t + 1. The last row of each sequence predicts a position the forward did not see; it is a
 * sure EOS, so a decoder that reads it ends the response there rather than matching by luck.
 */
function shiftedView(inner: Denoiser): Denoiser {
  const V = inner.spec.vocabSize;
  return {
    spec: { ...inner.spec, shiftedLogits: true },
    async forward(inp: ForwardInput) {
      const out = await inner.forward(inp);
      const T = inp.length;
      const logits = new Float32Array(out.logits.length);
      for (let b = 0; b < inp.batch; b++) {
        logits.set(out.logits.subarray((b * T + 1) * V, (b + 1) * T * V), b * T * V);
        logits[((b + 1) * T - 1) * V + inner.spec.eosId] = 50;
      }
      return { logits, present: out.present };
    },
  };
}

const prompts = [
  [5, 6, 7, 8],
  [9, 2],
  [3, 3, 4, 5, 6, 7],
];

async function decodeAll(model: Denoiser, input: DecodeParamsInput, onForward?: (f: ForwardInfo) => void) {
  const params = resolveDecodeParams({ max_new_tokens: 12, block_length: 4, ...input });
  const out = await decodeBatch(
    model,
    prompts.map((p, i) => ({ prompt: p, seed: 100 + i })),
    params,
    { onForward },
  );
  return out.map((r) => Array.from(r.rawResponse));
}

const ref = createReferenceDenoiser(SPEC, 3);
const shifted = shiftedView(ref);

const modes: Array<{ name: string; params: DecodeParamsInput }> = [
  ...UNMASK_ALGS.map((alg) => ({ name: `schedule ${alg}`, params: { commit: "schedule" as const, alg, steps: 12, temperature: 0.9 } })),
  { name: "schedule maskgit_plus alg_temp", params: { commit: "schedule", alg: "maskgit_plus", alg_temp: 0.5, steps: 6, temperature: 0.9 } },
  { name: "threshold 1.0 greedy", params: { threshold: 1, temperature: 0 } },
  { name: "threshold 0.3 sampled", params: { threshold: 0.3, temperature: 0.9 } },
  { name: "factor", params: { commit: "factor", factor: 1, temperature: 0.9 } },
  { name: "threshold, lookahead 3", params: { threshold: 1, temperature: 0.9, lookahead: 3 } },
];

for (const { name, params } of modes) {
  test(`shifted logits (${name}): the shifted view decodes what the unshifted model decodes, in every cache mode`, async () => {
    const plain = await decodeAll(ref, { ...params, cache: "none", eos_fill: false });
    assert.ok(new Set(plain.flat()).size > 3, "the reference model produces varied tokens");
    assert.deepEqual(await decodeAll(shifted, { ...params, cache: "none", eos_fill: false }), plain, "none");
    for (const cache of ["prefix", "dual"] as const) {
      // Exact (per-step) refresh: the unshifted cached decode equals `plain` (diffusion-decoder.test.ts),
      // so the shifted one must as well.
      assert.deepEqual(await decodeAll(shifted, { ...params, cache, cache_refresh: "step", eos_fill: false }), plain, cache);
    }
  });
}

test("shifted logits with eos_fill: cached and uncached agree, and equal the unshifted model", async () => {
  const base = { threshold: 1, temperature: 0.9 } as const;
  const plain = await decodeAll(ref, { ...base, cache: "none" });
  for (const cache of ["none", "prefix", "dual"] as const) {
    assert.deepEqual(await decodeAll(shifted, { ...base, cache, cache_refresh: "step" }), plain, cache);
  }
});

test("shifted logits, block-refreshed cache: with one layer the cache is exact, so prefix and dual match uncached", async () => {
  const one = createReferenceDenoiser({ ...SPEC, nLayers: 1 }, 5);
  const base = { threshold: 1, temperature: 0.7, eos_fill: false } as const;
  const plain = await decodeAll(one, { ...base, cache: "none" });
  for (const cache of ["prefix", "dual"] as const) {
    assert.deepEqual(await decodeAll(shiftedView(one), { ...base, cache }), plain, cache);
  }
});

test("shifted logits: a cached forward computes the block plus the position before it", async () => {
  const seen: ForwardInfo[] = [];
  await decodeBatch(
    shifted,
    [{ prompt: [5, 6], seed: 1 }],
    resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 1, cache: "dual", eos_fill: false }),
    { onForward: (f) => seen.push(f) },
  );
  // Canvas 10: block 1 = [2, 6) -> window [1, 6), past = [0, 1) + [6, 10); block 2 = [6, 10) -> window [5, 10), past [0, 5).
  assert.deepEqual(
    seen.map((k) => `${k.kind} ${k.length}+${k.pastLength}`),
    ["full 10+0", "cached 5+5", "cached 5+5", "cached 5+5", "full 10+0", "cached 5+5", "cached 5+5", "cached 5+5"],
  );
});

test("Dream's convention: position j takes row j - 1, and position 0 (an empty prompt) takes row 0", async () => {
  // Row at position i is a sharp peak on token 2 + ((i + 1) % 8): "the token of the next position".
  const V = SPEC.vocabSize;
  const next = (i: number) => 2 + ((i + 1) % 8);
  const model: Denoiser = {
    spec: { ...SPEC, shiftedLogits: true },
    async forward(inp: ForwardInput) {
      const logits = new Float32Array(inp.batch * inp.length * V);
      for (let i = 0; i < inp.batch * inp.length; i++) logits[i * V + next(inp.positions[i] as number)] = 20;
      const kv = () => Array.from({ length: SPEC.nLayers }, () => new Float32Array(inp.batch * SPEC.nHeads * inp.length * SPEC.headDim));
      return { logits, present: inp.wantPresent ? { keys: kv(), values: kv() } : undefined };
    },
  };
  for (const cache of ["none", "prefix", "dual"] as const) {
    const params = resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 1, cache, eos_fill: false });
    const [withPrompt, empty] = await decodeBatch(
      model,
      [
        { prompt: [5, 6, 7], seed: 1 },
        { prompt: [], seed: 2 },
      ],
      params,
    );
    // Response position p (absolute 3 + k) reads row p - 1, whose peak is next(p - 1) = 2 + (p % 8).
    assert.deepEqual(Array.from(withPrompt!.rawResponse), Array.from({ length: 8 }, (_, k) => 2 + ((3 + k) % 8)), cache);
    // Empty prompt: position 0 reads row 0 (next(0) = 3), position p >= 1 reads row p - 1.
    assert.deepEqual(Array.from(empty!.rawResponse), [3, ...Array.from({ length: 7 }, (_, k) => 2 + ((k + 1) % 8))], cache);
  }
});

test("a model whose logits are NaN stops the decode with an error naming the position (it does not loop)", async () => {
  const nan: Denoiser = {
    spec: SPEC,
    async forward(inp: ForwardInput) {
      return { logits: new Float32Array(inp.batch * inp.length * SPEC.vocabSize).fill(Number.NaN) };
    },
  };
  for (const temperature of [0, 0.9]) {
    await assert.rejects(
      decodeBatch(nan, [{ prompt: [5, 6], seed: 1 }], resolveDecodeParams({ max_new_tokens: 4, block_length: 4, temperature, cache: "none" })),
      /logits for position 2 are not finite/,
    );
  }
});

test("a vocabulary padded past the tokenizer (Qwen/Dream): ids at or above tokenizerVocabSize are never proposed", async () => {
  const V = SPEC.vocabSize;
  // The padding rows have the largest logits at every position.
  const model: Denoiser = {
    spec: { ...SPEC, vocabSize: V, tokenizerVocabSize: V - 2 },
    async forward(inp: ForwardInput) {
      const logits = new Float32Array(inp.batch * inp.length * V);
      for (let i = 0; i < inp.batch * inp.length; i++) {
        logits[i * V + 4] = 3;
        logits[i * V + V - 1] = 30;
        logits[i * V + V - 2] = 30;
      }
      return { logits };
    },
  };
  for (const temperature of [0, 1]) {
    const [r] = await decodeBatch(model, [{ prompt: [5, 6], seed: 3 }], resolveDecodeParams({ max_new_tokens: 8, block_length: 4, temperature, cache: "none", eos_fill: false }));
    assert.ok(r!.rawResponse.every((t) => t < V - 2), Array.from(r!.rawResponse).join(","));
  }
});
