import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError } from "@rlmesh/shared";
import { DEFAULT_DECODING, normalizeSpec } from "./job-spec.js";

const dir = mkdtempSync(join(tmpdir(), "spec-"));
const ds = join(dir, "d.jsonl");
writeFileSync(ds, "{}\n");
const base = { modelDir: dir, dataset: { path: ds } };

test("defaults fill unset fields; set zeros are kept (temperature 0 = greedy)", () => {
  const s = normalizeSpec(base);
  assert.equal(s.groupSize, 8);
  assert.deepEqual(s.decoding, DEFAULT_DECODING);
  assert.equal(normalizeSpec({ ...base, decoding: { temperature: 0, padPenalty: 0 } }).decoding.temperature, 0);
  assert.equal(normalizeSpec({ ...base, decoding: { temperature: 0, padPenalty: 0 } }).decoding.padPenalty, 0);
  assert.equal(normalizeSpec(base).decoding.lookahead, undefined, "unset: the rollout worker applies the model's");
  assert.equal(normalizeSpec({ ...base, decoding: { lookahead: 0 } }).decoding.lookahead, 0);
  assert.deepEqual(normalizeSpec(base).grpo, {}, "unset GRPO fields are left to the learner");
});

test("each bad field is named in the error", () => {
  const cases: [object, RegExp][] = [
    [{ ...base, modelDir: "" }, /^spec\.model_dir: must not be empty/],
    [{ ...base, modelDir: join(dir, "nope") }, /^spec\.model_dir: directory not found/],
    [{ modelDir: dir }, /^spec\.dataset\.path: is required/],
    [{ ...base, dataset: { path: ds, format: "csv" } }, /^spec\.dataset\.format: must be one of/],
    [{ ...base, groupSize: 1 }, /^spec\.group_size: must be an integer in \[2, 1024\], got 1/],
    [{ ...base, decoding: { alg: "greedy" } }, /^spec\.decoding\.alg: must be one of origin, maskgit_plus/],
    [{ ...base, decoding: { topP: 1.5 } }, /^spec\.decoding\.top_p: must be in \[0, 1\]/],
    [{ ...base, decoding: { lookahead: -4 } }, /^spec\.decoding\.lookahead: must be an integer in \[0, 8192\]/],
    [{ ...base, grpo: { tMin: 0.9, tMax: 0.1 } }, /^spec\.grpo\.t_min: must be <= t_max/],
    [{ ...base, grpo: { lossAgg: "sum" } }, /^spec\.grpo\.loss_agg: must be one of/],
    [{ ...base, extraEvalDatasets: [{ path: ds }, { path: join(dir, "missing.jsonl") }] }, /^spec\.extra_eval_datasets\[1\]\.path: file not found/],
    [{ ...base, evalSamples: -1 }, /^spec\.eval_samples: must be an integer in \[0, 1024\]/],
    [{ ...base, maxMinutes: -2 }, /^spec\.max_minutes: must be in \[0, 1000000\]/],
  ];
  for (const [spec, re] of cases) {
    assert.throws(
      () => normalizeSpec(spec),
      (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message),
      JSON.stringify(spec),
    );
  }
  assert.throws(() => normalizeSpec(undefined), /InvalidArgumentError: spec: is required/);
});

test("an explicit 0 is validated as 0, never replaced by the default; negative seeds are refused", () => {
  const zero: [object, RegExp][] = [
    [{ ...base, steps: 0 }, /^spec\.steps: must be an integer in \[1, 1000000\], got 0/],
    [{ ...base, groupSize: 0 }, /^spec\.group_size: must be an integer in \[2, 1024\], got 0/],
    [{ ...base, promptsPerStep: 0 }, /^spec\.prompts_per_step: must be an integer in \[1, 4096\], got 0/],
    [{ ...base, seed: -1 }, /^spec\.seed: must be an integer/],
    [{ ...base, steps: 2.5 }, /^spec\.steps: must be an integer/],
  ];
  for (const [spec, re] of zero) {
    assert.throws(() => normalizeSpec(spec), (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message), JSON.stringify(spec));
  }
  // Where 0 is legal it means 0.
  assert.equal(normalizeSpec({ ...base, maxStaleness: 0 }).maxStaleness, 0);
  assert.equal(normalizeSpec({ ...base, evalInterval: 0 }).evalInterval, 0);
  // Unset takes the default.
  assert.equal(normalizeSpec(base).steps, 20);
});

test("curriculum: off by default, explore defaults to 0.1, bad values are named", () => {
  assert.deepEqual(normalizeSpec(base).curriculum, { window: 0, explore: 0.1 });
  assert.deepEqual(normalizeSpec({ ...base, curriculum: { window: 2 } }).curriculum, { window: 2, explore: 0.1 });
  assert.deepEqual(normalizeSpec({ ...base, curriculum: { window: 1, explore: 0 } }).curriculum, { window: 1, explore: 0 });
  assert.throws(() => normalizeSpec({ ...base, curriculum: { window: -1 } }), /^InvalidArgumentError: spec\.curriculum\.window: must be an integer in \[0, 64\], got -1/);
  assert.throws(() => normalizeSpec({ ...base, curriculum: { window: 1.5 } }), /spec\.curriculum\.window/);
  assert.throws(() => normalizeSpec({ ...base, curriculum: { window: 2, explore: 1.5 } }), /spec\.curriculum\.explore: .*1\.5/);
});

test("infill length cuts: unset by default (the model's manifest decides), kept when set, refused by name out of [0, 1] or with fixed length; length search 0 unless set", () => {
  assert.deepEqual(normalizeSpec({ ...base, task: "infill" }).infill, { initialLength: 16, maxLength: 64, variableLength: true, lengthSearch: 0 });
  assert.deepEqual(normalizeSpec({ ...base, task: "infill", infill: { eosCut: 0.5, expandCut: 0, lengthSearch: 3 } }).infill, {
    initialLength: 16,
    maxLength: 64,
    variableLength: true,
    lengthSearch: 3,
    eosCut: 0.5,
    expandCut: 0,
  });
  assert.throws(() => normalizeSpec({ ...base, task: "infill", infill: { lengthSearch: 17 } }), /^InvalidArgumentError: spec\.infill\.length_search: /);
  assert.throws(
    () => normalizeSpec({ ...base, task: "infill", infill: { variableLength: false, lengthSearch: 2 } }),
    /^InvalidArgumentError: spec\.infill\.length_search: applies to variable-length infilling only/,
  );
  assert.throws(() => normalizeSpec({ ...base, task: "infill", infill: { eosCut: 1.5 } }), /^InvalidArgumentError: spec\.infill\.eos_cut: .*1\.5/);
  assert.throws(() => normalizeSpec({ ...base, task: "infill", infill: { expandCut: -0.1 } }), /^InvalidArgumentError: spec\.infill\.expand_cut: /);
  assert.throws(
    () => normalizeSpec({ ...base, task: "infill", infill: { variableLength: false, eosCut: 0.5 } }),
    /^InvalidArgumentError: spec\.infill\.eos_cut: applies to variable-length infilling only/,
  );
});

test("lr_schedule: constant by default, cosine's defaults filled in, bad values refused naming the field", () => {
  assert.deepEqual(normalizeSpec(base).lrSchedule, { decay: "constant", decayStart: 0.5, minRatio: 0.1 });
  assert.deepEqual(normalizeSpec({ ...base, lrSchedule: { decay: "cosine" } }).lrSchedule, {
    decay: "cosine",
    decayStart: 0.5,
    minRatio: 0.1,
  });
  assert.deepEqual(normalizeSpec({ ...base, lrSchedule: { decay: "cosine", decayStart: 0, minRatio: 1 } }).lrSchedule, {
    decay: "cosine",
    decayStart: 0,
    minRatio: 1,
  });
  const bad: [object, RegExp][] = [
    [{ decay: "linear" }, /^spec\.lr_schedule\.decay: must be one of constant, cosine, got "linear"/],
    [{ decay: "" }, /^spec\.lr_schedule\.decay: must be one of constant, cosine, got ""/],
    [{ decay: "cosine", decayStart: 1 }, /^spec\.lr_schedule\.decay_start: must be in \[0, 1\), got 1$/],
    [{ decay: "cosine", decayStart: -0.1 }, /^spec\.lr_schedule\.decay_start: must be in \[0, 1\), got -0\.1/],
    [{ decay: "cosine", decayStart: Number.NaN }, /^spec\.lr_schedule\.decay_start: must be in \[0, 1\), got NaN/],
    [{ decay: "cosine", minRatio: 0 }, /^spec\.lr_schedule\.min_ratio: must be in \(0, 1\], got 0$/],
    [{ decay: "cosine", minRatio: 1.5 }, /^spec\.lr_schedule\.min_ratio: must be in \(0, 1\], got 1\.5/],
    [{ minRatio: -1 }, /^spec\.lr_schedule\.min_ratio: must be in \(0, 1\], got -1/],
  ];
  for (const [lrSchedule, re] of bad) {
    assert.throws(
      () => normalizeSpec({ ...base, lrSchedule }),
      (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message),
      JSON.stringify(lrSchedule),
    );
  }
});
