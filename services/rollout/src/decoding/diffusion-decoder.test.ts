import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBatch, DecodeAbortedError, stepsPerBlock, type ForwardInfo } from "./diffusion-decoder.js";
import { decodeModeParams, resolveDecodeParams, type DecodeParamsInput } from "./decode-params.js";
import { createReferenceDenoiser } from "./reference-denoiser.js";
import type { Denoiser, DenoiserSpec, ForwardInput } from "./denoiser.js";

const SPEC: DenoiserSpec = { vocabSize: 12, nLayers: 2, nHeads: 2, headDim: 4, maxSeqLen: 64, maskId: 11, padId: 0, eosId: 1 };

/** A model whose logits at each position come from a script of (position) -> logits row. */
function scripted(rowAt: (pos: number) => number[], spec: DenoiserSpec = SPEC): Denoiser {
  return {
    spec,
    async forward(inp: ForwardInput) {
      const V = spec.vocabSize;
      const logits = new Float32Array(inp.batch * inp.length * V);
      for (let i = 0; i < inp.batch * inp.length; i++) logits.set(rowAt(inp.positions[i] as number), i * V);
      const kv = () => Array.from({ length: spec.nLayers }, () => new Float32Array(inp.batch * spec.nHeads * inp.length * spec.headDim));
      return { logits, present: inp.wantPresent ? { keys: kv(), values: kv() } : undefined };
    },
  };
}

/** One-hot-ish row: `token` gets logit `strength`, the rest 0. */
function peak(token: number, strength: number, V = SPEC.vocabSize): number[] {
  const r = new Array(V).fill(0);
  r[token] = strength;
  return r;
}

const prompt = [5, 6, 7];

test("steps are split evenly over blocks", () => {
  assert.deepEqual(stepsPerBlock(8, 4), [2, 2, 2, 2]);
  assert.deepEqual(stepsPerBlock(5, 2), [2, 3]);
  assert.deepEqual(stepsPerBlock(2, 4), [1, 1, 1, 1]);
});

test("vanilla commits one token per step: NFE equals max_new_tokens", async () => {
  const model = scripted((p) => peak(2 + (p % 8), 5));
  const params = decodeModeParams("vanilla", { max_new_tokens: 8, block_length: 4 });
  const [r] = await decodeBatch(model, [{ prompt, seed: 1 }], params);
  assert.equal(r!.nfe, 8);
  assert.equal(r!.steps, 8);
  assert.deepEqual(r!.tokenIds, [5, 6, 7, 8, 9, 2, 3, 4]);
  assert.equal(r!.finished, false);
});

test("threshold commits every confident token at once and at least one otherwise", async () => {
  // Probability of the peak token with logit 10 among 12 tokens is ~0.9995; with logit 1 it is ~0.2.
  const confident = scripted(() => peak(3, 10));
  const [fast] = await decodeBatch(
    confident,
    [{ prompt, seed: 1 }],
    resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 0.9, cache: "none" }),
  );
  assert.equal(fast!.nfe, 2, "one step per block");
  const unsure = scripted(() => peak(3, 1));
  const [slow] = await decodeBatch(
    unsure,
    [{ prompt, seed: 1 }],
    resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 0.9, cache: "none" }),
  );
  assert.equal(slow!.nfe, 8, "one token per step when nothing reaches the threshold");
});

test("factor rule commits more tokens per step when they are confident", async () => {
  // MASK is never a candidate, so 11 tokens compete: logit 10 -> c = .9995, logit 3 -> c = e^3/(e^3+10) = .668.
  const model = scripted((p) => peak(3, p % 2 === 0 ? 10 : 3));
  const run = async (factor: number) =>
    (
      await decodeBatch(model, [{ prompt, seed: 1 }], resolveDecodeParams({ max_new_tokens: 4, block_length: 4, factor, cache: "none" }))
    )[0]!;
  // factor 2: 3 * .0005, 4 * .332 = 1.33 and 5 * .332 = 1.66 are all < 2: one step.
  assert.equal((await run(2)).nfe, 1);
  // factor 1: the two certain tokens (4 * .332 >= 1 stops), then [.668, .668]: 3 * .332 = 0.997 < 1: both.
  assert.equal((await run(1)).nfe, 2);
  // factor 0.9: the two certain tokens, then one at a time.
  assert.equal((await run(0.9)).nfe, 3);
});

test("EOS ends the response: PAD after it, ids cut after EOS, the sequence stops early", async () => {
  const model = scripted((p) => (p === prompt.length + 2 ? peak(SPEC.eosId, 9) : peak(4, 8)));
  const params = resolveDecodeParams({ max_new_tokens: 16, block_length: 4, threshold: 0.9, cache: "none" });
  const [r] = await decodeBatch(model, [{ prompt, seed: 1 }], params);
  assert.deepEqual(r!.tokenIds, [4, 4, SPEC.eosId]);
  assert.equal(r!.finished, true);
  assert.equal(r!.nfe, 1, "blocks after the EOS are never decoded");
  assert.deepEqual(Array.from(r!.rawResponse.subarray(3)), new Array(13).fill(SPEC.padId));
});

test("PAD penalty holds PAD back early and lets it through as the response fills", async () => {
  // PAD logit 2 beats token 7 (logit 1) everywhere; penalty 3 at progress k/4 is 3(1 - k/4).
  const model = scripted(() => {
    const r = peak(7, 1);
    r[SPEC.padId] = 2;
    return r;
  });
  const base: DecodeParamsInput = { max_new_tokens: 4, block_length: 4, steps: 4, cache: "none" };
  const [none] = await decodeBatch(model, [{ prompt, seed: 1 }], resolveDecodeParams(base));
  assert.deepEqual(none!.tokenIds, [], "without a penalty the response is empty");
  const [pen] = await decodeBatch(model, [{ prompt, seed: 1 }], resolveDecodeParams({ ...base, pad_penalty: 3 }));
  // penalties 3, 2.25, 1.5 keep PAD (2 - pen) under 1; 0.75 does not: three tokens then PAD.
  assert.deepEqual(pen!.tokenIds, [7, 7, 7]);
  assert.equal(pen!.finished, true);
});

test("the alg decides which position is revealed first", async () => {
  const V = SPEC.vocabSize;
  // Position a: p = [.5, .5] split between two tokens (high max prob, zero margin).
  // Position b: p ~ .45 on one token, rest spread thin (lower max prob, large margin).
  const a = prompt.length;
  const rowA = new Array(V).fill(-30);
  rowA[3] = 0;
  rowA[4] = 0;
  const rowB = new Array(V).fill(0);
  rowB[5] = Math.log((0.45 * (V - 1)) / 0.55);
  const model = scripted((p) => (p === a ? rowA : rowB));
  const first = async (alg: "maskgit_plus" | "topk_margin") => {
    const seen: number[][] = [];
    const m: Denoiser = {
      spec: SPEC,
      async forward(inp) {
        seen.push(Array.from(inp.ids.subarray(a, a + 2)));
        return model.forward(inp);
      },
    };
    await decodeBatch(m, [{ prompt, seed: 1 }], resolveDecodeParams({ max_new_tokens: 2, block_length: 2, steps: 2, alg, cache: "none" }));
    return seen[1]!;
  };
  assert.deepEqual(await first("maskgit_plus"), [3, SPEC.maskId], "maskgit_plus: highest probability first");
  assert.deepEqual(await first("topk_margin"), [SPEC.maskId, 5], "topk_margin: largest margin first");
});

test("finished sequences drop out of the batch and each sequence commits at its own pace", async () => {
  // Sequence with prompt [5] ends at once (EOS at its first response position); prompt [6,6] runs on.
  const model: Denoiser = {
    spec: SPEC,
    async forward(inp) {
      const V = SPEC.vocabSize;
      const logits = new Float32Array(inp.batch * inp.length * V);
      for (let b = 0; b < inp.batch; b++) {
        const short = inp.ids[b * inp.length] === 5 && inp.positions[b * inp.length] === 0;
        for (let t = 0; t < inp.length; t++) {
          const pos = inp.positions[b * inp.length + t] as number;
          logits.set(short && pos === 1 ? peak(SPEC.eosId, 9) : peak(4, 1), (b * inp.length + t) * V);
        }
      }
      return { logits };
    },
  };
  const sizes: number[] = [];
  const params = resolveDecodeParams({ max_new_tokens: 4, block_length: 4, threshold: 0.9, cache: "none" });
  const [short, long] = await decodeBatch(
    model,
    [
      { prompt: [5], seed: 1 },
      { prompt: [6, 6], seed: 2 },
    ],
    params,
    {
      onForward: (f: ForwardInfo) => sizes.push(f.batch),
    },
  );
  assert.deepEqual(short!.tokenIds, [SPEC.eosId]);
  assert.equal(short!.nfe, 1);
  assert.equal(long!.nfe, 4);
  assert.deepEqual(sizes, [2, 1, 1, 1]);
});

test("an aborted signal stops the decode between steps", async () => {
  const ctl = new AbortController();
  const model = scripted(() => peak(3, 1));
  let calls = 0;
  const m: Denoiser = {
    spec: SPEC,
    async forward(inp) {
      if (++calls === 2) ctl.abort(new Error("deadline"));
      return model.forward(inp);
    },
  };
  await assert.rejects(
    decodeBatch(m, [{ prompt, seed: 1 }], decodeModeParams("vanilla", { max_new_tokens: 16 }), { signal: ctl.signal }),
    (e: unknown) => e instanceof DecodeAbortedError && /deadline/.test(e.message),
  );
  assert.equal(calls, 2);
});

test("a prompt that does not fit max_seq_len is rejected naming max_new_tokens", async () => {
  await assert.rejects(
    decodeBatch(
      scripted(() => peak(3, 1)),
      [{ prompt: new Array(60).fill(5), seed: 1 }],
      resolveDecodeParams({ max_new_tokens: 8 }),
    ),
    /max_new_tokens 8 \+ prompt length 60 exceeds/,
  );
});

// --- exactness against a real (reference) transformer ---

const ref = createReferenceDenoiser(SPEC, 3);
const prompts = [
  [5, 6, 7, 8],
  [9, 2],
  [3, 3, 4, 5, 6, 7],
];

async function decodeAll(model: Denoiser, input: DecodeParamsInput) {
  const params = resolveDecodeParams({ max_new_tokens: 12, block_length: 4, ...input });
  return decodeBatch(
    model,
    prompts.map((p, i) => ({ prompt: p, seed: 100 + i })),
    params,
  );
}

const raw = (out: Awaited<ReturnType<typeof decodeAll>>) => out.map((r) => Array.from(r.rawResponse));

/** Uncached tokens of `base`, checked equal to prefix and dual with an exact (per-step) refresh. */
async function cachedMatchesUncached(base: DecodeParamsInput): Promise<number[][]> {
  const plain = raw(await decodeAll(ref, { ...base, cache: "none" }));
  for (const cache of ["prefix", "dual"] as const) {
    assert.deepEqual(raw(await decodeAll(ref, { ...base, cache, cache_refresh: "step" })), plain, cache);
  }
  return plain;
}

for (const temperature of [0, 0.9]) {
  test(`threshold 1.0 with exact cache refresh reproduces the uncached tokens (temperature ${temperature})`, async () => {
    await cachedMatchesUncached({ threshold: 1, temperature, eos_fill: false });
  });
}

test("with a one-layer model the block-refreshed cache is exact, so prefix and dual match uncached", async () => {
  const one = createReferenceDenoiser({ ...SPEC, nLayers: 1 }, 5);
  const base = { threshold: 1, temperature: 0.7 };
  const plain = await decodeAll(one, { ...base, cache: "none" });
  for (const cache of ["prefix", "dual"] as const) {
    const cached = await decodeAll(one, { ...base, cache });
    assert.deepEqual(
      cached.map((r) => r.tokenIds),
      plain.map((r) => r.tokenIds),
      cache,
    );
    // One full forward per block, cached forwards for the rest: fewer full-length passes.
    assert.ok(cached.every((r, i) => r.nfe === plain[i]!.nfe || r.nfe > 0));
  }
});

test("a sequence decodes the same alone or in a batch with others", async () => {
  for (const cache of ["none", "prefix", "dual"] as const) {
    const params = { threshold: 0.5, temperature: 0.8, cache } as const;
    const together = await decodeAll(ref, params);
    for (let i = 0; i < prompts.length; i++) {
      const [alone] = await decodeBatch(
        ref,
        [{ prompt: prompts[i]!, seed: 100 + i }],
        resolveDecodeParams({ max_new_tokens: 12, block_length: 4, ...params }),
      );
      assert.deepEqual(alone!.rawResponse, together[i]!.rawResponse, `${cache} #${i}`);
    }
  }
});

test("cached modes refresh once per block and then run block-sized forwards", async () => {
  const kinds: ForwardInfo[] = [];
  await decodeBatch(
    ref,
    [{ prompt: [5, 6], seed: 1 }],
    resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 1, cache: "dual", eos_fill: false }),
    {
      onForward: (f) => kinds.push(f),
    },
  );
  // Two blocks of four tokens, one token per step: full + 3 cached per block.
  assert.deepEqual(
    kinds.map((k) => k.kind),
    ["full", "cached", "cached", "cached", "full", "cached", "cached", "cached"],
  );
  assert.deepEqual(
    kinds.filter((k) => k.kind === "cached").map((k) => [k.length, k.pastLength]),
    new Array(6).fill([4, 6]),
  );
  const prefixKinds: ForwardInfo[] = [];
  await decodeBatch(
    ref,
    [{ prompt: [5, 6], seed: 1 }],
    resolveDecodeParams({ max_new_tokens: 8, block_length: 4, threshold: 1, cache: "prefix", eos_fill: false }),
    {
      onForward: (f) => prefixKinds.push(f),
    },
  );
  assert.deepEqual(
    prefixKinds.filter((k) => k.kind === "cached").map((k) => [k.length, k.pastLength]),
    [
      [8, 2],
      [8, 2],
      [8, 2],
      [4, 6],
      [4, 6],
      [4, 6],
    ],
  );
});

test("the dual cache is approximate: a multi-layer model can decode differently, but every position is filled", async () => {
  const out = await decodeAll(ref, { threshold: 1, cache: "dual" });
  for (const r of out) assert.ok(!r.rawResponse.includes(SPEC.maskId));
});

test("lookahead: the model sees the current block and L masked positions after it, in every cache mode", async () => {
  const seen = async (cache: "none" | "prefix" | "dual") => {
    const f: ForwardInfo[] = [];
    await decodeBatch(
      ref,
      [{ prompt: [5, 6], seed: 1 }],
      resolveDecodeParams({ max_new_tokens: 12, block_length: 4, threshold: 1, cache, eos_fill: false, lookahead: 2 }),
      { onForward: (x) => f.push(x) },
    );
    return f;
  };
  // Blocks end at 6, 10 and 14 (the canvas end): visible ends 8, 12 and 14.
  const plain = await seen("none");
  assert.deepEqual([...new Set(plain.map((k) => k.length))], [8, 12, 14]);
  const dual = await seen("dual");
  assert.deepEqual(
    [...new Set(dual.map((k) => `${k.kind} ${k.length}+${k.pastLength}`))],
    ["full 8+0", "cached 4+4", "full 12+0", "cached 4+8", "full 14+0", "cached 4+10"],
  );
  const prefix = await seen("prefix");
  assert.deepEqual(
    [...new Set(prefix.filter((k) => k.kind === "cached").map((k) => `${k.length}+${k.pastLength}`))],
    ["6+2", "6+6", "4+10"],
  );
});

for (const temperature of [0, 0.9]) {
  test(`lookahead with exact cache refresh reproduces the uncached tokens; a lookahead past the canvas changes nothing (temperature ${temperature})`, async () => {
    const base = { threshold: 1, temperature, eos_fill: false, lookahead: 3 };
    const plain = await cachedMatchesUncached(base);
    const whole = raw(await decodeAll(ref, { ...base, lookahead: 0, cache: "none" }));
    assert.deepEqual(raw(await decodeAll(ref, { ...base, lookahead: 12, cache: "none" })), whole);
    assert.notDeepEqual(plain, whole, "hiding the far masks changes what this model decodes");
  });
}
