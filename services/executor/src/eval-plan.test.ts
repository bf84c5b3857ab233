// Matching samples to dataset tasks (pure): many samples per task kept in order, completions
// joined to HumanEval prompts, unmatched ids an error or a warning, never silence.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import { rewardResult } from "@rlmesh/shared/reward/reward-result";
import { extractLastCodeBlock } from "./code-block.js";
import { EvalError, loadSamples, planEval, sampleResponse, summarize, writeResults } from "./run-eval.js";

const he = (id: string): CanonicalRow => ({
  task_id: id,
  prompt: "def f(x):\n",
  tests: { kind: "assert", tests: ["assert f(1) == 1"], entry_point: "f" },
  source: "humaneval",
});
const mbpp = (id: string): CanonicalRow => ({ task_id: id, prompt: "Write f.", tests: { kind: "assert", tests: ["assert f(1) == 1"] }, source: "mbpp" });

function withFile(text: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-plan-"));
  try {
    const p = join(dir, "samples.jsonl");
    writeFileSync(p, text);
    fn(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("samples.jsonl: every line kept, numbered per task in file order; completion or response", () => {
  withFile(
    [
      { task_id: "HE/0", completion: "    return x\n" },
      { task_id: "HE/1", response: "```python\ndef f(x):\n    return x\n```" },
      { task_id: "HE/0", completion: "    return 2\n" },
      { task_id: 7, response: "no code" },
    ]
      .map((o) => JSON.stringify(o))
      .join("\n") + "\n\n",
    (path) => {
      const samples = loadSamples(path);
      assert.equal(samples.length, 4);
      assert.deepEqual(
        samples.map((s) => [s.task_id, s.kind, s.line]),
        [
          ["HE/0", "completion", 1],
          ["HE/1", "response", 2],
          ["HE/0", "completion", 3],
          ["7", "response", 4],
        ],
      );
      const plan = planEval([he("HE/0"), he("HE/1"), mbpp("7")], samples);
      assert.deepEqual(
        plan.candidates.map((c) => [c.row.task_id, c.sample, c.line]),
        [
          ["HE/0", 0, 1],
          ["HE/0", 1, 3],
          ["HE/1", 0, 2],
          ["7", 0, 4],
        ],
      );
      assert.deepEqual([...plan.counts], [["HE/0", 2], ["HE/1", 1], ["7", 1]]);
      assert.deepEqual(plan.warnings, []);
      assert.equal(extractLastCodeBlock(plan.candidates[0]!.response), "def f(x):\n    return x");
    },
  );
});

test("a completion is appended to a HumanEval prompt, stands alone otherwise, and survives its own fences", () => {
  const s = { task_id: "x", kind: "completion" as const, text: "    s = '```'\n    return x\n" };
  assert.equal(extractLastCodeBlock(sampleResponse(he("x"), s)), "def f(x):\n    s = '```'\n    return x");
  assert.equal(extractLastCodeBlock(sampleResponse(mbpp("x"), { ...s, text: "def f(x):\n    return x" })), "def f(x):\n    return x");
  assert.equal(sampleResponse(mbpp("x"), { task_id: "x", kind: "response", text: "raw" }), "raw");
});

test("no sample naming a dataset task is an error naming some of each side's ids", () => {
  const rows = ["HumanEval/0", "HumanEval/1"].map(he);
  const samples = Array.from({ length: 10 }, (_, i) => ({ task_id: String(i), kind: "response" as const, text: "" }));
  assert.throws(
    () => planEval(rows, samples),
    (err: Error) =>
      err instanceof EvalError &&
      /none of the 10 sample\(s\) names a task of the dataset \(2 task\(s\)\)/.test(err.message) &&
      /"0", "1", "2", "3", "4", … \(10 in all\)/.test(err.message) &&
      /"HumanEval\/0", "HumanEval\/1"/.test(err.message),
  );
});

test("a partial match warns with the counts: unmatched samples and tasks without samples", () => {
  const rows = ["a", "b", "c"].map(mbpp);
  const plan = planEval(rows, [
    { task_id: "a", kind: "response", text: "" },
    { task_id: "zz", kind: "response", text: "" },
    { task_id: "zz", kind: "response", text: "" },
  ]);
  assert.equal(plan.candidates.length, 1);
  assert.equal(plan.unmatched.length, 2);
  assert.deepEqual(plan.warnings, [
    '2 of 3 sample(s) name a task id the dataset does not have (1 distinct: "zz"); they are not scored',
    '2 of 3 task(s) have no sample ("b", "c"); each counts as 0 in pass@k',
  ]);
});

test("bad sample lines name the line and field", () => {
  const bad = (o: unknown, re: RegExp) => withFile(JSON.stringify(o) + "\n", (p) => assert.throws(() => loadSamples(p), re));
  bad({ task_id: "a" }, /:1: field "response" \(or "completion"\): missing/);
  bad({ task_id: "a", response: "x", completion: "y" }, /has both "response" and "completion"/);
  bad({ task_id: null, response: "x" }, /field "task_id"/);
  bad({ task_id: "a", completion: 3 }, /field "completion": expected a string/);
  withFile("{nope\n", (p) => assert.throws(() => loadSamples(p), /:1: invalid JSON/));
});

test("summary and --results lines", () => {
  const ok = rewardResult({ status: "passed", tests_run: 1, tests_passed: 1, tests_total: 1, duration_ms: 3, reason: "" });
  const bad = rewardResult({ status: "failed", tests_run: 1, tests_passed: 0, tests_total: 1, duration_ms: 4, reason: "assert" });
  const s = summarize([ok, bad, bad], 1.5, [{ task_id: "a", n: 2, c: 1 }, { task_id: "b", n: 1, c: 0 }, { task_id: "c", n: 0, c: 0 }], [1, 2], 4);
  assert.equal(s.total, 3);
  assert.equal(s.tasks, 3);
  assert.deepEqual(s.samples_per_task, { min: 1, max: 2 });
  assert.equal(s.unanswered_tasks, 1);
  assert.equal(s.unmatched_samples, 4);
  assert.deepEqual(s.pass_at_k, { "1": 0.5 / 3 });
  assert.equal(s.pass_at_k_skipped[0]!.k, 2);
  withFile("", (p) => {
    writeResults(p, [
      { task_id: "a", sample: 0, line: 1, result: ok },
      { task_id: "a", sample: 1, line: 3, result: bad },
    ]);
    const lines = readFileSync(p, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines[1], { task_id: "a", sample: 1, line: 3, reward: 0, status: "failed", tests_passed: 0, tests_total: 1, duration_ms: 4, reason: "assert" });
  });
});
