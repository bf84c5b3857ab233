import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { InvalidArgumentError } from "@rlmesh/shared";
import { DEFAULT_MODEL_DIR, TOY_DATASET_DIR } from "@rlmesh/shared/repo-paths";
import { normalizeSpec } from "../job-spec.js";
import { jobTrainShape, loadJobRows, loadRows, validateDatasets } from "./job-datasets.js";

const dir = mkdtempSync(join(tmpdir(), "rlmesh-datasets-"));
const row = (id: string, prompt: string) => JSON.stringify({ task_id: id, prompt, tests: { kind: "assert", tests: ["assert f(1) == 1"] } });

test("submit-time check: every prompt plus max_new_tokens must fit the model's max_seq_len", async () => {
  const ds = join(dir, "long.jsonl");
  writeFileSync(ds, `${row("short", "Write f(x) that returns x.")}\n${row("huge", "word ".repeat(5000))}\n`);
  await assert.rejects(
    validateDatasets(normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: ds } })),
    (e: unknown) =>
      e instanceof InvalidArgumentError &&
      /^spec\.dataset\.path: .*long\.jsonl: row 2 \(task huge\) has a \d+-token prompt; with decoding\.max_new_tokens 64 the model's max_seq_len \d+ leaves room for \d+ prompt tokens/.test(e.message),
  );
  // A max_new_tokens that leaves no room for any prompt is named as such.
  const ok = join(dir, "ok.jsonl");
  writeFileSync(ok, `${row("short", "Write f(x) that returns x.")}\n`);
  await assert.rejects(
    validateDatasets(normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: ok }, decoding: { maxNewTokens: 8000 } })),
    /^InvalidArgumentError: spec\.decoding\.max_new_tokens: 8000 leaves no room for a prompt/,
  );
  // The shipped datasets fit the shipped model at the default decoding.
  await validateDatasets(
    normalizeSpec({
      modelDir: DEFAULT_MODEL_DIR,
      dataset: { path: join(TOY_DATASET_DIR, "train.jsonl") },
      evalDataset: { path: join(TOY_DATASET_DIR, "test-instances.jsonl") },
    }),
  );
});

test("submit-time check: the job's decoding cache must be one the model serves (variable-length infilling uses none)", async () => {
  // The shipped model's manifest, declaring no KV cache.
  const noCache = join(dir, "no-cache-model");
  mkdirSync(noCache, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, "manifest.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(noCache, "manifest.json"), JSON.stringify({ ...manifest, cache_support: [] }));
  const ds = join(TOY_DATASET_DIR, "train.jsonl");
  await assert.rejects(
    validateDatasets(normalizeSpec({ modelDir: noCache, dataset: { path: ds } })),
    (e: unknown) => e instanceof InvalidArgumentError && /^spec\.decoding\.cache: dual: .* serves no KV cache; set decoding\.cache to none/.test(e.message),
  );
  await assert.rejects(
    validateDatasets(normalizeSpec({ modelDir: noCache, dataset: { path: ds }, task: "infill", infill: { variableLength: false } })),
    /spec\.decoding\.cache: dual/,
  );
  await validateDatasets(normalizeSpec({ modelDir: noCache, dataset: { path: ds }, decoding: { cache: "none" } }));
  await validateDatasets(normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: ds }, decoding: { cache: "prefix" } }));
});

test("the job's train shape for the learner's warm-up: rows P × G, the training prompts' token range, max_new_tokens; none for infill or without a model", async () => {
  // The demo's job on the shipped model and toy suite: the learner's default recipe (32 rows,
  // prompts of 19-45 tokens, responses up to 64) is this shape.
  const demo = normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: join(TOY_DATASET_DIR, "train.jsonl") }, promptsPerStep: 4, groupSize: 8 });
  assert.deepEqual(await jobTrainShape(demo, loadRows(demo.dataset)), { rows: 32, promptTokensMin: 19, promptTokensMax: 45, responseTokens: 64 });
  // Another job: its own rows, prompts and max_new_tokens.
  const ds = join(dir, "shape.jsonl");
  writeFileSync(ds, `${row("a", "Write f(x) that returns x.")}\n${row("b", "Write f(x) that returns the sum of the squares of the digits of x, for x >= 0.")}\n`);
  const otherSpec = normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: ds }, promptsPerStep: 2, groupSize: 4, decoding: { maxNewTokens: 32 } });
  const other = await jobTrainShape(otherSpec, loadRows(otherSpec.dataset));
  assert.equal(other?.rows, 8);
  assert.equal(other?.responseTokens, 32);
  assert.ok(other && other.promptTokensMin > 0 && other.promptTokensMax > other.promptTokensMin, JSON.stringify(other));
  // Infill rows are prefix + middle + suffix, not prompt + response: the learner's recipe serves.
  const infill = normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: join(TOY_DATASET_DIR, "train.jsonl") }, task: "infill" });
  assert.equal(await jobTrainShape(infill, loadJobRows(infill.dataset, infill)), null);
  // Not a model directory: refused as at submit (job-start logs it and leaves the shape out).
  await assert.rejects(jobTrainShape(normalizeSpec({ modelDir: dir, dataset: { path: ds } }), []), /^InvalidArgumentError: spec\.model_dir: .* has no manifest\.json/);
});
