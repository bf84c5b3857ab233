/**
 * Decode traces (DecodingParams.trace): the commit step of every response position is a
 * consistent record of the decode, in every cache mode and commit rule, and costs nothing
 * (is absent) when off.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBatch, stepsPerBlock, type DecodedSequence } from "./diffusion-decoder.js";
import { CACHE_MODES, resolveDecodeParams, type DecodeParamsInput } from "./decode-params.js";
import { createReferenceDenoiser } from "./reference-denoiser.js";
import type { DenoiserSpec } from "./denoiser.js";

const SPEC: DenoiserSpec = { vocabSize: 16, nLayers: 2, nHeads: 2, headDim: 4, maxSeqLen: 64, maskId: 15, padId: 0, eosId: 1 };
const inputs = [
  { prompt: [5, 6, 7], seed: 11 },
  { prompt: [8, 9, 10, 11, 12], seed: 12 },
  { prompt: [3], seed: 13 },
];
const model = createReferenceDenoiser(SPEC, 3);

async function run(p: DecodeParamsInput): Promise<DecodedSequence[]> {
  return decodeBatch(model, inputs, resolveDecodeParams(p));
}

/** Checks one traced sequence against the decode it records; returns its commit steps. */
function checkTrace(r: DecodedSequence, gen: number, blockLength: number, what: string): number[] {
  assert.ok(r.commitSteps, `${what}: traced`);
  const c = Array.from(r.commitSteps);
  assert.equal(c.length, gen, `${what}: one entry per response position`);
  for (const [j, s] of c.entries()) {
    assert.ok(Number.isInteger(s) && s >= 1 && s <= r.steps, `${what}: position ${j} committed at step ${s}, outside [1, ${r.steps}]`);
    assert.ok(s <= r.nfe, `${what}: step ${s} > nfe ${r.nfe}`);
  }
  // Every step commits something up to the last one the sequence took (origin may skip a step,
  // the others never do), and the last step is used.
  assert.equal(Math.max(...c), r.steps, `${what}: the last step committed something`);
  // Semi-autoregressive blocks: a block is finished before the next one starts, so every
  // commit of block b comes no later than any of block b + 1 — within the response up to its
  // end (an EOS with eos_fill writes PAD into later blocks at the step that committed the EOS).
  const body = c.slice(0, r.tokenIds.length);
  const nBlocks = Math.ceil(body.length / blockLength);
  for (let b = 0; b + 1 < nBlocks; b++) {
    const cur = body.slice(b * blockLength, (b + 1) * blockLength);
    const nxt = body.slice((b + 1) * blockLength, (b + 2) * blockLength);
    assert.ok(Math.max(...cur) <= Math.min(...nxt), `${what}: block ${b} ends at step ${Math.max(...cur)} after block ${b + 1} starts at ${Math.min(...nxt)}`);
  }
  return c;
}

test("trace off: no commit steps (no bookkeeping); trace on: the same tokens, with commit steps", async () => {
  for (const cache of CACHE_MODES) {
    const base: DecodeParamsInput = { max_new_tokens: 16, block_length: 8, temperature: 1, threshold: 0.6, cache };
    const off = await run(base);
    const on = await run({ ...base, trace: true });
    for (const r of off) assert.equal(r.commitSteps, undefined, `${cache}: no trace unless asked`);
    assert.deepEqual(
      on.map((r) => r.tokenIds),
      off.map((r) => r.tokenIds),
      `${cache}: tracing does not change the decode`,
    );
    assert.deepEqual(
      on.map((r) => r.nfe),
      off.map((r) => r.nfe),
    );
    on.forEach((r, i) => checkTrace(r, 16, 8, `${cache} sample ${i}`));
  }
});

test("every cache mode and commit rule gives a consistent record (each position once, steps in [1, nfe])", async () => {
  const rules: Array<[string, DecodeParamsInput]> = [
    ["threshold 0.9", { threshold: 0.9 }],
    ["factor 1", { factor: 1 }],
    ["schedule maskgit_plus", { commit: "schedule", steps: 8, alg: "maskgit_plus" }],
    ["schedule entropy", { commit: "schedule", steps: 12, alg: "entropy" }],
    ["schedule origin", { commit: "schedule", steps: 8, alg: "origin" }],
    ["schedule topk_margin alg_temp", { commit: "schedule", steps: 8, alg: "topk_margin", alg_temp: 0.5 }],
  ];
  for (const cache of CACHE_MODES) {
    for (const [name, rule] of rules) {
      for (const eos_fill of [true, false]) {
        const res = await run({ max_new_tokens: 16, block_length: 8, temperature: 0.8, cache, eos_fill, trace: true, ...rule });
        res.forEach((r, i) => checkTrace(r, 16, 8, `${cache} ${name} eos_fill=${eos_fill} sample ${i}`));
      }
    }
  }
});

test("threshold 1.0 (one token per step): each step commits exactly one position, in every cache mode", async () => {
  for (const cache of CACHE_MODES) {
    const res = await run({ max_new_tokens: 16, block_length: 4, temperature: 0.7, threshold: 1, cache, eos_fill: false, trace: true });
    res.forEach((r, i) => {
      const c = checkTrace(r, 16, 4, `${cache} sample ${i}`);
      assert.equal(r.steps, 16);
      assert.deepEqual(
        [...c].sort((a, b) => a - b),
        Array.from({ length: 16 }, (_, k) => k + 1),
        `${cache} sample ${i}: a permutation of steps 1..16`,
      );
    });
  }
});

test("the step schedule commits as many positions per step as it planned; origin and entropy orders differ", async () => {
  const base: DecodeParamsInput = { max_new_tokens: 16, block_length: 16, temperature: 0.8, commit: "schedule", steps: 16, eos_fill: false, trace: true };
  const entropy = await run({ ...base, alg: "entropy" });
  const origin = await run({ ...base, alg: "origin" });
  for (const r of entropy) {
    const c = checkTrace(r, 16, 16, "entropy");
    // 16 steps for 16 tokens in one block: one per step.
    assert.deepEqual([...c].sort((a, b) => a - b), Array.from({ length: 16 }, (_, k) => k + 1));
  }
  origin.forEach((r, i) => checkTrace(r, 16, 16, `origin ${i}`));
  assert.notDeepEqual(
    origin.map((r) => Array.from(r.commitSteps!)),
    entropy.map((r) => Array.from(r.commitSteps!)),
    "origin (random order) and entropy (confidence order) commit in different orders",
  );
  // Two blocks of 8 with 4 steps each: the schedule commits 2 per step.
  const blocks = await run({ ...base, block_length: 8, steps: 8, alg: "maskgit_plus" });
  assert.deepEqual(stepsPerBlock(8, 2), [4, 4]);
  for (const r of blocks) {
    const c = checkTrace(r, 16, 8, "maskgit_plus 2 blocks");
    for (let s = 1; s <= 8; s++) assert.equal(c.filter((x) => x === s).length, 2, `step ${s} commits 2 positions`);
  }
});
