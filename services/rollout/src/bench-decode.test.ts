import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchDecodeCommand, parseBenchDecodeArgs } from "./bench-decode.js";
import { extractCode, passesWithPython } from "./python-check.js";
import { writeRandomModelDir } from "./testing/test-model.js";
import { REPO_ROOT as REPO } from "@rlmesh/shared/repo-paths";


test("bench arguments: defaults, overrides, and errors that name the option", () => {
  const d = parseBenchDecodeArgs([]);
  assert.deepEqual(d.genLengths, [256, 128]);
  assert.deepEqual(d.modes, ["vanilla", "parallel", "prefix", "dual"]);
  assert.equal(d.json, false);
  const o = parseBenchDecodeArgs(["--json", "--tasks", "3", "--gen-lengths", "64", "--modes", "vanilla,dual", "--evaluator", "python"]);
  assert.deepEqual([o.json, o.tasks, o.genLengths, o.modes, o.evaluator], [true, 3, [64], ["vanilla", "dual"], "python"]);
  assert.throws(() => parseBenchDecodeArgs(["--modes", "fast"]), /--modes: unknown mode fast/);
  assert.throws(() => parseBenchDecodeArgs(["--tasks", "0"]), /--tasks must be a positive integer/);
});

test("python3 fallback scores assert and stdio tests on the fenced code", () => {
  assert.equal(extractCode("text\n```python\nprint(1)\n```\n"), "print(1)"); // the reward path's rule (shared/src/reward/program.ts)
  assert.equal(extractCode("no code"), null);
  const stdio = {
    task_id: "s",
    prompt: "",
    source: "rlmesh" as const,
    tests: { kind: "stdio" as const, cases: [{ input: "3\n", output: "6\n" }] },
  };
  assert.equal(passesWithPython(stdio, "```python\nx = int(input())\nprint(x * 2)\n```"), true);
  assert.equal(passesWithPython(stdio, "```python\nx = int(input())\nprint(x + 2)\n```"), false);
  const asserts = { task_id: "a", prompt: "", source: "rlmesh" as const, tests: { kind: "assert" as const, tests: ["assert f(2) == 4"] } };
  assert.equal(passesWithPython(asserts, "```python\ndef f(x):\n    return x * 2\n```"), true);
  assert.equal(passesWithPython(asserts, "def f(x): return x * 2"), false, "no code block, no reward");
});

test("bench decode --json prints the issue's JSON shape (random-weight model, 2 tasks)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-bench-model-"));
  try {
    await writeRandomModelDir(dir, join(REPO, "models", "tiny-coder", "tokenizer.json"), {
      dModel: 16,
      nLayers: 2,
      nHeads: 2,
      ffDim: 32,
      maxSeqLen: 160,
      normEps: 1e-5,
    });
    let printed = "";
    const code = await benchDecodeCommand(
      [
        "--json",
        "--model",
        dir,
        "--dataset",
        join(REPO, "datasets", "toy", "test-instances.jsonl"),
        "--tasks",
        "2",
        "--gen-lengths",
        "64,32",
        "--evaluator",
        "python",
      ],
      { out: (s) => (printed += s), err: () => {} },
    );
    assert.equal(code, 0);
    const r = JSON.parse(printed);
    assert.equal(r.gen_length, 64);
    for (const mode of ["vanilla", "parallel", "prefix", "dual"]) {
      const m = r.modes[mode];
      assert.ok(m.tokens_per_s > 0 && m.nfe_per_token > 0, mode);
      assert.equal(typeof m.pass_at_1, "number");
    }
    assert.equal(typeof r.speedup_best, "number");
    assert.equal(typeof r.batch8_vs_batch1, "number");
    assert.ok(r.peak_rss_mb > 50 && r.peak_rss_mb < 100_000, `peak RSS ${r.peak_rss_mb} MB`);
    assert.deepEqual(
      r.runs.map((x: { gen_length: number }) => x.gen_length),
      [64, 32],
    );
    // The cached modes refresh once per block and run cheaper block forwards in between.
    assert.ok(r.modes.dual.cached_forwards > 0 && r.modes.vanilla.cached_forwards === 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bench decode --batch-only: only batch8_vs_batch1 (first mode, first gen length), each call logged; contradicting --no-batch is an error", async () => {
  assert.throws(() => parseBenchDecodeArgs(["--batch-only", "--no-batch"]), /--batch-only and --no-batch contradict each other/);
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-bench-model-"));
  try {
    await writeRandomModelDir(dir, join(REPO, "models", "tiny-coder", "tokenizer.json"), { dModel: 16, nLayers: 2, nHeads: 2, ffDim: 32, maxSeqLen: 160, normEps: 1e-5 });
    let printed = "";
    let logged = "";
    const code = await benchDecodeCommand(
      ["--json", "--batch-only", "--model", dir, "--dataset", join(REPO, "datasets", "toy", "test-instances.jsonl"), "--tasks", "8", "--gen-lengths", "32,16", "--modes", "dual", "--evaluator", "none"],
      { out: (s) => (printed += s), err: (s) => (logged += s + "\n") },
    );
    assert.equal(code, 0, logged);
    const r = JSON.parse(printed);
    assert.equal(r.gen_length, 32);
    assert.deepEqual(r.modes, {}, "no per-mode pass");
    assert.equal(r.runs.length, 1);
    assert.equal(r.batch_mode, "dual");
    assert.ok(r.batch8_vs_batch1 > 0, String(r.batch8_vs_batch1));
    assert.ok(r.batch8_vs_batch1_cpu > 0, String(r.batch8_vs_batch1_cpu));
    assert.match(logged, /batch of 8 \(dual, gen 32\): [\d.]+ s, [\d.]+ CPU-s, peak RSS \d+ MB/);
    assert.match(logged, /batch 8 vs 1 \(dual, gen 32\): [\d.]+ s vs [\d.]+ s wall, [\d.]+ vs [\d.]+ CPU-s/);
    assert.equal(logged.match(/ {2}alone \d\/8: /g)?.length, 8, logged);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
