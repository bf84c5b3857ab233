import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { DatasetError, parseDataset } from "../datasets/index.js";
import type { CanonicalRow } from "../datasets/index.js";
import { DEFAULT_MODEL_DIR, TOY_DATASET_DIR } from "../repo-paths.js";
import { loadTokenizer } from "../tokenizer/index.js";
import { cutRow, infillProgram, infillRowsFromRows, loadInfillRows, middleCandidates } from "./index.js";

const row = (task_id: string, reference?: string): CanonicalRow => ({
  task_id,
  prompt: "Write a program.",
  tests: { kind: "assert", tests: ["assert f(1) == 2"], entry_point: "f" },
  ...(reference !== undefined ? { reference } : {}),
  source: "rlmesh",
});

const FIVE_LINES = "```python\ndef f(x):\n    y = x + 1\n    z = y * 2\n    w = z - 3\n    return w\n```";

test("a middle is a run of whole lines: prefix + middle + suffix rebuild the reference exactly", () => {
  const rows = Array.from({ length: 40 }, (_, i) => row(`t${i}`, FIVE_LINES));
  for (const r of infillRowsFromRows(rows, { seed: 7 })) {
    const [a, b] = r.middle_lines;
    assert.ok(a >= 1 && b > a && b <= 5, `span ${a}-${b}`);
    assert.equal(r.prompt + infillProgram(r, r.middle), r.prompt + FIVE_LINES);
    assert.equal(r.prefix + r.middle + r.suffix, r.prompt + FIVE_LINES);
    // Line boundaries: the middle is whole lines, each starting with its newline.
    assert.ok(r.middle.startsWith("\n"), JSON.stringify(r.middle));
    assert.equal(r.middle.split("\n").length - 1, b - a);
    assert.ok(r.suffix.startsWith("\n") && r.suffix.endsWith("\n```"));
    assert.ok(!r.prefix.endsWith("\n"));
    assert.ok(!r.middle.includes("def "), "the def line stays in the context");
    assert.equal(r.task_id, `${r.source_task_id}#L${a}-${b}`);
  }
});

test("middle choice is deterministic by seed and per row (independent of the other rows)", () => {
  const rows = Array.from({ length: 30 }, (_, i) => row(`t${i}`, FIVE_LINES));
  const a = infillRowsFromRows(rows, { seed: 1 }).map((r) => r.task_id);
  const again = infillRowsFromRows(rows, { seed: 1 }).map((r) => r.task_id);
  assert.deepEqual(a, again);
  const other = infillRowsFromRows(rows, { seed: 2 }).map((r) => r.task_id);
  assert.notDeepEqual(a, other, "another seed picks other middles");
  const reversed = infillRowsFromRows([...rows].reverse(), { seed: 1 }).map((r) => r.task_id);
  assert.deepEqual(reversed, [...a].reverse());
  // Spans vary across rows (more than one of the candidates is used).
  assert.ok(new Set(a.map((id) => id.split("#")[1])).size > 3);
});

test("middle candidates follow DreamOn's filters: not the whole program, no def line, at least 3 words when possible", () => {
  assert.deepEqual(middleCandidates(["def f(x):", "    return x + 1"]), [[1, 2]]);
  assert.deepEqual(middleCandidates(["def f(s):", "    return s[:4][-9:]"]), [[1, 2]], "a short middle when nothing longer exists");
  assert.deepEqual(middleCandidates(["def f(x):"]), []);
  assert.deepEqual(middleCandidates(["xs = list(map(int, input().split()))", "print(sum(xs))"]), [[0, 1]]);
  assert.deepEqual(middleCandidates(["a = 1 + 2", "b = a * 3", "print(b)"], 1), [
    [0, 1],
    [1, 2],
  ]);
});

test("a row without a usable reference is a DatasetError naming the file, line, field and row", () => {
  const lines = [3, 9];
  assert.throws(
    () => infillRowsFromRows([row("ok", FIVE_LINES), row("no-ref")], { file: "x.jsonl", lines }),
    (err: unknown) => err instanceof DatasetError && err.line === 9 && err.field === "reference" && /x\.jsonl:9: field "reference": row "no-ref" has no reference/.test(err.message),
  );
  assert.throws(
    () => infillRowsFromRows([row("one-line", "```python\nprint(1 + 2 + 3)\n```")], { file: "y.jsonl", lines: [4] }),
    /y\.jsonl:4: field "reference": row "one-line" has no run of whole lines usable as a middle/,
  );
  assert.throws(
    () => infillRowsFromRows([row("two-blocks", "```python\na = 1\n```\ntext\n```python\nb = 2\n```")], { file: "z.jsonl", lines: [1] }),
    /z\.jsonl:1: field "reference": row "two-blocks" is not a single fenced code block/,
  );
});

test("allSpans gives every qualifying middle of each row (training data)", () => {
  const all = infillRowsFromRows([row("a", FIVE_LINES), row("b", "```python\ndef f(x):\n    return x + 1\n```")], { allSpans: true });
  // 4 body lines → runs [a, b) with 1 ≤ a < b ≤ 5, less "    return w" alone (2 words); the other row has one.
  assert.deepEqual(
    all.map((r) => r.task_id),
    ["a#L1-2", "a#L1-3", "a#L1-4", "a#L1-5", "a#L2-3", "a#L2-4", "a#L2-5", "a#L3-4", "a#L3-5", "b#L1-2"],
  );
});

test("a bare reference (MBPP's code) is cut inside an added python fence", () => {
  const [r] = infillRowsFromRows([row("mbpp", "def f(x):\n    y = x * 2\n    return y + 1\n")], { seed: 3 });
  assert.ok(r!.prefix.startsWith("Write a program.```python\ndef f(x):"));
  assert.equal(infillProgram(r!, r!.middle), "```python\ndef f(x):\n    y = x * 2\n    return y + 1\n```");
});

test("toy splits: held-out rows only from held-out files, training rows only from train; lines are the file's", () => {
  const heldout = loadInfillRows(join(TOY_DATASET_DIR, "test-instances.jsonl"), "heldout");
  assert.equal(heldout.length, 200);
  assert.equal(heldout[0]!.line, 1);
  assert.ok(heldout.every((r) => r.source_task_id.startsWith("toy-test-")));
  assert.throws(() => loadInfillRows(join(TOY_DATASET_DIR, "train.jsonl"), "heldout"), /train\.jsonl: is a training split/);
  assert.throws(() => loadInfillRows(join(TOY_DATASET_DIR, "test-compositional.jsonl"), "train"), /is a held-out split/);
  const comp = loadInfillRows(join(TOY_DATASET_DIR, "test-compositional.jsonl"), "heldout", { seed: 1 });
  assert.equal(comp.length, 200);
  // A file's bad row is reported with its real line number (blank lines counted).
  const dir = mkdtempSync(join(tmpdir(), "infill-rows-"));
  const file = join(dir, "mine.jsonl");
  const good = { task_id: "a", prompt: "p", tests: { kind: "assert", tests: ["assert 1"] }, reference: FIVE_LINES };
  writeFileSync(file, `${JSON.stringify(good)}\n\n${JSON.stringify({ ...good, task_id: "b", reference: undefined })}\n`);
  assert.throws(() => loadInfillRows(file, "train"), (err: unknown) => err instanceof DatasetError && err.line === 3 && /row "b"/.test(err.message));
});

test("cutRow keeps the source row's tests and names the span", () => {
  const [src] = parseDataset(JSON.stringify({ task_id: "s", prompt: "P.", tests: { kind: "stdio", cases: [{ input: "", output: "1\n" }] }, reference: "```python\nx = 1\nprint(x)\n```" }));
  const r = cutRow(src!, { open: "```python", code: ["x = 1", "print(x)"], close: "```" }, 1, 2);
  assert.deepEqual(r.tests, src!.tests);
  assert.equal(r.prefix, "P.```python\nx = 1");
  assert.equal(r.middle, "\nprint(x)");
  assert.equal(r.suffix, "\n```");
});

test("the tiny coder tokenizes prefix | middle | suffix exactly as the prompt and whole reference it was trained on", async () => {
  const tok = await loadTokenizer(join(DEFAULT_MODEL_DIR, "tokenizer.json"));
  const rows = parseDataset(readFileSync(join(TOY_DATASET_DIR, "test-instances.jsonl"), "utf8"));
  const infill = infillRowsFromRows(rows, { seed: 1 });
  infill.forEach((r, i) => {
    const pieces = [...tok.encode(r.prefix), ...tok.encode(r.middle), ...tok.encode(r.suffix)];
    assert.deepEqual(pieces, [...tok.encode(rows[i]!.prompt), ...tok.encode(rows[i]!.reference!)], r.task_id);
  });
});
