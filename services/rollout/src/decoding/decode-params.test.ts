import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeModeParams, InvalidDecodeParamsError, resolveDecodeParams } from "./decode-params.js";

function rejects(input: Parameters<typeof resolveDecodeParams>[0], field: string, text: string) {
  assert.throws(
    () => resolveDecodeParams(input),
    (e: unknown) => e instanceof InvalidDecodeParamsError && e.field === field && e.message.includes(text),
  );
}

test("bad parameters are rejected with the field named", () => {
  rejects({ temperature: -1 }, "temperature", "temperature must be >= 0");
  rejects({ top_p: 1.5 }, "top_p", "top_p must be in (0, 1]");
  rejects({ top_k: -2 }, "top_k", "top_k must be >= 0");
  rejects({ alg: "greedy" as never }, "alg", "alg must be one of");
  rejects({ cache: "full" as never }, "cache", "cache must be one of");
  rejects({ max_new_tokens: 1.5 }, "max_new_tokens", "must be an integer");
  rejects({ max_new_tokens: 16, steps: 32 }, "steps", "steps must be <= max_new_tokens");
  rejects({ threshold: 1.2 }, "threshold", "threshold must be in (0, 1]");
  rejects({ pad_penalty: -3 }, "pad_penalty", "pad_penalty must be >= 0");
  rejects({ temperature: Number.NaN }, "temperature", "finite");
  rejects({ lookahead: -1 }, "lookahead", "lookahead must be >= 0");
  rejects({ lookahead: 2.5 }, "lookahead", "must be an integer");
});

test("zero values mean defaults, as in the proto", () => {
  const p = resolveDecodeParams({ max_new_tokens: 0, block_length: 0, top_p: 0, threshold: 0 });
  assert.equal(p.max_new_tokens, 128);
  assert.equal(p.block_length, 32);
  assert.equal(p.top_p, 1);
  assert.equal(p.commit, "threshold");
  assert.equal(p.threshold, 0.9);
  assert.equal(p.lookahead, 0, "the whole canvas unless asked");
});

test("the commit rule follows factor, then threshold, then steps", () => {
  assert.equal(resolveDecodeParams({ factor: 1, threshold: 0.8 }).commit, "factor");
  assert.equal(resolveDecodeParams({ threshold: 0.8, steps: 64 }).commit, "threshold");
  assert.equal(resolveDecodeParams({ steps: 64 }).commit, "schedule");
});

test("benchmark modes", () => {
  const v = decodeModeParams("vanilla", { max_new_tokens: 256 });
  assert.deepEqual([v.commit, v.steps, v.cache], ["schedule", 256, "none"]);
  const d = decodeModeParams("dual", { max_new_tokens: 256 });
  assert.deepEqual([d.commit, d.threshold, d.cache], ["threshold", 0.9, "dual"]);
  assert.equal(decodeModeParams("prefix").cache, "prefix");
  assert.equal(decodeModeParams("parallel").cache, "none");
});
