import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { loadModel } from "@rlmesh/shared/model/index";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";

import { parseTrainBaseArgs, trainBase } from "./train-base.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const rows = [
  {
    prompt: "Write a function f(x) that adds 3 to x, then doubles the result, and returns the result.",
    reference: "```python\ndef f(x):\n    y = x + 3\n    return y * 2\n```",
    tests: { kind: "assert", tests: ["assert f(1) == 8", "assert f(0) == 6"], entry_point: "f" },
  },
  {
    prompt: "Write a program that reads an integer n and prints n + 1.",
    reference: "```python\nn = int(input())\nprint(n + 1)\n```",
    tests: { kind: "stdio", cases: [{ input: "1\n", output: "2\n" }] },
  },
];

test("train-base --recipe dreamon (3 steps from the shipped base) grows the vocabulary by <|expand|>, trains and writes a model whose manifest declares expand_id", async () => {
  const data = await mkdtemp(join(tmpdir(), "rlmesh-dreamon-"));
  dirs.push(data);
  const jsonl = rows.map((r, i) => JSON.stringify({ task_id: `t${i}`, ...r })).join("\n") + "\n";
  for (const split of ["train", "test-instances", "test-compositional"]) await writeFile(join(data, `${split}.jsonl`), jsonl);
  const base = join(REPO_ROOT, "models/tiny-coder");
  const out = join(data, "infill");
  const lines: string[] = [];
  const args = {
    ...parseTrainBaseArgs(["--recipe", "dreamon", "--config", "tiny", "--init", base, "--steps", "3", "--seed", "5", "--eval-limit", "2", "--lr", "1e-4"]),
    data,
    out,
    tokenizer: join(base, "tokenizer.json"),
  };
  const r = await trainBase(args, (l) => lines.push(l));
  assert.equal(r.steps, 3);
  assert.ok(Number.isFinite(r.finalLoss) && r.finalLoss > 0, `loss ${r.finalLoss}`);
  assert.ok(lines.some((l) => /vocab 565 → 566/.test(l)), lines.join("\n"));
  const model = await loadModel(out);
  const baseModel = await loadModel(base);
  assert.equal(model.manifest.vocab_size, baseModel.manifest.vocab_size + 1);
  assert.equal(model.manifest.expand_id, baseModel.manifest.vocab_size);
  assert.equal(model.manifest.special_tokens?.expand, "<|expand|>");
  assert.equal(model.manifest.eos_id, baseModel.manifest.eos_id);
  assert.equal((model.manifest.training as { recipe?: string }).recipe, "dreamon");
  const tok = await loadTokenizer(join(out, "tokenizer.json"));
  assert.equal(tok.tokenToId("<|expand|>"), model.manifest.expand_id);
  // Ordinary text tokenizes as before (the new token is special, added at the end).
  const baseTok = await loadTokenizer(join(base, "tokenizer.json"));
  assert.deepEqual(tok.encode(rows[0]!.reference), baseTok.encode(rows[0]!.reference));
  // The final eval ran every mode on the held-out rows (2 rows each).
  assert.deepEqual(Object.keys(r.evals).sort(), ["infill_oracle", "infill_variable_from_32", "infill_variable_from_4"]);
  for (const e of Object.values(r.evals)) assert.equal(e.n, 2);
  const manifestText = await readFile(join(out, "manifest.json"), "utf8");
  assert.match(manifestText, /"infill_pass_at_1_oracle"/);
});

test("scaleTrunkUpdate: every weight moves s × its step, except the new vocabulary rows (tied) / columns (untied head), which keep the whole step", async () => {
  const { scaleTrunkUpdate } = await import("./train-base-dreamon.js");
  const V = 4;
  const d = 2;
  const before = { tok_embedding: new Float32Array(V * d).fill(1), lm_head: new Float32Array(d * V).fill(1), w: new Float32Array([1, 1]) };
  const after = {
    tok_embedding: { data: new Float32Array(V * d).fill(3) },
    lm_head: { data: new Float32Array(d * V).fill(3) },
    w: { data: new Float32Array([3, -1]) },
  };
  scaleTrunkUpdate(after as never, before, 0.25, 3, V, d);
  // Old rows 0..2 of the embedding: 1 + 0.25·2; the new row 3: the whole step.
  assert.deepEqual([...after.tok_embedding.data], [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 3, 3]);
  // lm_head [d, V]: column 3 of each row is new.
  assert.deepEqual([...after.lm_head.data], [1.5, 1.5, 1.5, 3, 1.5, 1.5, 1.5, 3]);
  assert.deepEqual([...after.w.data], [1.5, 0.5]);
  assert.throws(() => scaleTrunkUpdate({ x: { data: new Float32Array(2) } } as never, {}, 0.5, 3, V, d), /no snapshot of x/);
});

test("the DreamOn-only flags are refused with the mdlm recipe and out of range, by name", () => {
  assert.throws(() => parseTrainBaseArgs(["--exact-share", "0.5"]), /--exact-share applies to --recipe dreamon only/);
  assert.throws(() => parseTrainBaseArgs(["--recipe", "dreamon", "--exact-share", "1.5"]), /--exact-share must be in \[0, 1\]/);
  assert.throws(() => parseTrainBaseArgs(["--recipe", "dreamon", "--trunk-lr-scale", "2"]), /--trunk-lr-scale must be in \[0, 1\]/);
  assert.throws(() => parseTrainBaseArgs(["--recipe", "dreamon", "--uniform-merges", "-1"]), /--uniform-merges must be a number/);
  const a = parseTrainBaseArgs(["--recipe", "dreamon", "--exact-share", "0.25", "--max-delete", "16", "--uniform-merges", "0.5", "--trunk-lr-scale", "0.1"]);
  assert.equal(a.dreamonExactShare, 0.25);
  assert.equal(a.dreamonMaxDelete, 16);
  assert.equal(a.dreamonUniformMerges, 0.5);
  assert.equal(a.trunkLrScale, 0.1);
});
