import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidArgumentError } from "./grpc/errors.js";
import { checkJobSpecJson, editDistance, nearestName } from "./spec-json.js";

const fails = (spec: unknown, re: RegExp) =>
  assert.throws(() => checkJobSpecJson(spec), (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message), JSON.stringify(spec));

test("a job spec JSON in snake_case or camelCase with the right types passes", () => {
  checkJobSpecJson({
    model_dir: "models/tiny-coder",
    dataset: { path: "d.jsonl", format: "rlmesh", limit: 10 },
    groupSize: 8,
    steps: 5,
    seed: 1,
    decoding: { temperature: 1.0, top_p: 0.95, cache: "dual", max_new_tokens: 64 },
    grpo: { lr: 1e-4, clip_high: 0.28 },
    extra_eval_datasets: [{ path: "e.jsonl" }],
    overlap: false,
    eval_dataset: null,
  });
  checkJobSpecJson({ seed: "123456789012" }); // 64-bit integers may be decimal strings (proto3 JSON)
  fails({ seed: "18014398509481984" }, /^spec\.seed: expected an integer in \[0, 9007199254740991\]/); // past 2^53 it would lose bits
});

test("unknown keys are named with the nearest known key, at any depth", () => {
  fails({ setps: 5 }, /^spec\.setps: unknown field \(did you mean steps\?\)/);
  fails({ decodng: {} }, /^spec\.decodng: unknown field \(did you mean decoding\?\)/);
  fails({ decoding: { temprature: 0.5 } }, /^spec\.decoding\.temprature: unknown field \(did you mean temperature\?\)/);
  fails({ dataset: { path: "x", limt: 3 } }, /^spec\.dataset\.limt: unknown field \(did you mean limit\?\)/);
  fails({ zzzzzz: 1 }, /^spec\.zzzzzz: unknown field; JobSpec has name, model_dir/);
});

test("wrong types and non-integers are errors, never coercions", () => {
  fails({ steps: "five" }, /^spec\.steps: expected an integer in \[-2147483648, 2147483647\], got the string "five"/);
  fails({ steps: "5" }, /^spec\.steps: expected an integer/);
  fails({ steps: 2.5 }, /^spec\.steps: expected an integer.*got number 2\.5/);
  fails({ seed: -1 }, /^spec\.seed: expected an integer in \[0, /);
  fails({ overlap: "yes" }, /^spec\.overlap: expected true or false/);
  fails({ decoding: { temperature: "hot" } }, /^spec\.decoding\.temperature: expected a number/);
  fails({ dataset: "train.jsonl" }, /^spec\.dataset: expected an object \(DatasetSpec\)/);
  fails({ extra_eval_datasets: { path: "x" } }, /^spec\.extra_eval_datasets: expected an array/);
  fails({ extra_eval_datasets: [{ path: 3 }] }, /^spec\.extra_eval_datasets\[0\]\.path: expected a string/);
  fails([], /^spec: expected an object/);
});

test("nearest-name suggestions only for likely typos", () => {
  assert.equal(editDistance("setps", "steps"), 1);
  assert.equal(nearestName("grup_size", ["group_size", "steps"]), "group_size");
  assert.equal(nearestName("banana", ["group_size", "steps"]), undefined);
});
