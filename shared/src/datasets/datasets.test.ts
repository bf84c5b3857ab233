import { test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatasetError, detectFormat, loadDataset, parseDataset, unpickleString } from "./index.js";

const HUMANEVAL = {
  task_id: "HumanEval/0",
  prompt: "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
  entry_point: "add",
  canonical_solution: "    return a + b\n",
  test: "def check(candidate):\n    assert candidate(1, 2) == 3\n",
};
const MBPP = { task_id: 2, prompt: "Add.", code: "def add(a, b): return a + b", test_imports: ["import math"], test_list: ["assert add(1, 2) == 3"] };
const LCB_STDIN = {
  question_id: "abc123_a",
  question_content: "Print a+b.",
  public_test_cases: JSON.stringify([{ input: "1 2\n", output: "3\n", testtype: "stdin" }]),
  private_test_cases: [{ input: "2 2\n", output: "4\n", testtype: "stdin" }],
};
const LCB_FUNCTIONAL = {
  question_id: "lc-1",
  question_content: "Two sum.",
  starter_code: "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
  public_test_cases: [{ input: "[2,7,11,15]\n9", output: "[0,1]", testtype: "functional" }],
  metadata: JSON.stringify({ func_name: "twoSum" }),
};

const jsonl = (...rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

test("HumanEval rows become one check(entry_point) test with the prompt+solution reference", () => {
  const [row] = parseDataset(jsonl(HUMANEVAL));
  assert.equal(row!.source, "humaneval");
  assert.deepEqual(row!.tests, { kind: "assert", setup: HUMANEVAL.test, tests: ["check(add)"], entry_point: "add" });
  assert.equal(row!.reference, HUMANEVAL.prompt + HUMANEVAL.canonical_solution);
});

test("MBPP rows (prompt or text) become assert tests with their imports as setup", () => {
  const [a, b] = parseDataset(jsonl(MBPP, { ...MBPP, task_id: 3, prompt: undefined, text: "Add (original MBPP)." }), "mbpp");
  assert.equal(a!.task_id, "2");
  assert.deepEqual(a!.tests, { kind: "assert", setup: "import math", tests: MBPP.test_list });
  assert.equal(b!.prompt, "Add (original MBPP).");
});

test("LiveCodeBench stdin and functional rows; private cases as base64(zlib(pickle))", () => {
  const pickled = (s: string) => {
    const body = Buffer.from(s, "utf8");
    const head = Buffer.from([0x80, 0x04, 0x58]);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(body.length, 0);
    return deflateSync(Buffer.concat([head, len, body, Buffer.from([0x94, 0x2e])])).toString("base64");
  };
  const packed = { ...LCB_STDIN, private_test_cases: pickled(JSON.stringify([{ input: "5 5\n", output: "10\n", testtype: "stdin" }])) };
  const [s, f, p] = parseDataset(jsonl(LCB_STDIN, LCB_FUNCTIONAL, { ...packed, question_id: "packed" }));
  assert.deepEqual(s!.tests, { kind: "stdio", cases: [{ input: "1 2\n", output: "3\n" }, { input: "2 2\n", output: "4\n" }] });
  assert.deepEqual(f!.tests, { kind: "call", fn: "twoSum", cases: [{ args: [[2, 7, 11, 15], 9], expected: [0, 1] }] });
  assert.ok(f!.prompt.includes("class Solution"));
  assert.deepEqual(p!.tests, { kind: "stdio", cases: [{ input: "1 2\n", output: "3\n" }, { input: "5 5\n", output: "10\n" }] });
  assert.equal(unpickleString(Buffer.from([0x80, 0x04, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, 0x8c, 2, 0x68, 0x69, 0x94, 0x2e])), "hi");
});

test("rlmesh canonical rows round-trip", () => {
  const rows = [...parseDataset(jsonl(HUMANEVAL)), ...parseDataset(jsonl(MBPP)), ...parseDataset(jsonl(LCB_FUNCTIONAL))];
  const again = parseDataset(rows.map((r) => JSON.stringify(r)).join("\n"), "auto");
  assert.deepEqual(again.map((r) => r.tests), rows.map((r) => r.tests));
  assert.equal(again[0]!.source, "rlmesh");
});

test("an rlmesh row's meta.template is its template (the curriculum key), kept through a round trip; a bad one is named", () => {
  const row = { task_id: "t1", prompt: "p", tests: { kind: "assert", tests: ["assert True"] }, meta: { family: "a", template: "a/b.c" } };
  const [r] = parseDataset(jsonl(row), "rlmesh");
  assert.equal(r!.template, "a/b.c");
  assert.equal(parseDataset(JSON.stringify(r), "rlmesh")[0]!.template, "a/b.c");
  assert.equal(parseDataset(jsonl({ ...row, meta: { family: "a" } }), "rlmesh")[0]!.template, undefined);
  assert.throws(() => parseDataset(jsonl({ ...row, meta: { template: 7 } }), "rlmesh"), /field "meta\.template": expected a non-empty string, got/);
});

test("format detection", () => {
  assert.equal(detectFormat(HUMANEVAL), "humaneval");
  assert.equal(detectFormat(MBPP), "mbpp");
  assert.equal(detectFormat(LCB_STDIN), "lcb");
  assert.equal(detectFormat({ foo: 1 }), undefined);
});

function errorOf(fn: () => unknown): DatasetError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof DatasetError, `expected DatasetError, got ${String(err)}`);
    return err;
  }
  assert.fail("no error thrown");
}

test("bad rows name the line and the field", () => {
  let e = errorOf(() => parseDataset(jsonl(MBPP, { ...MBPP, task_id: 9, test_list: ["assert 1", 5] }), "mbpp", "data.jsonl"));
  assert.equal(e.line, 2);
  assert.equal(e.field, "test_list[1]");
  assert.match(e.message, /^data\.jsonl:2: field "test_list\[1\]"/);
  e = errorOf(() => parseDataset(jsonl(HUMANEVAL, { ...HUMANEVAL, task_id: "x", entry_point: undefined }), "humaneval"));
  assert.deepEqual([e.line, e.field], [2, "entry_point"]);
  e = errorOf(() => parseDataset("\n" + jsonl({ ...LCB_STDIN, public_test_cases: "[{\"input\": 1}]", private_test_cases: undefined }), "lcb"));
  assert.deepEqual([e.line, e.field], [2, "public_test_cases[0].input"]);
  e = errorOf(() => parseDataset(jsonl({ ...LCB_FUNCTIONAL, metadata: "{}" }), "lcb"));
  assert.equal(e.field, "metadata.func_name");
  e = errorOf(() => parseDataset(jsonl(MBPP) + "{not json\n"));
  assert.deepEqual([e.line, e.field], [2, "(row)"]);
  e = errorOf(() => parseDataset(jsonl(MBPP, HUMANEVAL)));
  assert.deepEqual([e.line, e.field], [2, "test_list"], "one format per file, detected from the first row");
  e = errorOf(() => parseDataset(jsonl(MBPP, MBPP)));
  assert.deepEqual([e.line, e.field], [2, "task_id"]);
  e = errorOf(() => parseDataset(jsonl({ task_id: "a", prompt: "p", tests: { kind: "stdio", cases: [{ input: "1" }] } })));
  assert.equal(e.field, "tests.cases[0].output");
});

test("unreadable files, non-UTF-8 bytes and missing fields get errors that name the file, line and field", () => {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-ds-"));
  assert.throws(() => loadDataset(dir), (e: unknown) => e instanceof DatasetError && e.message === `${dir}: is a directory, expected a JSONL file`);
  assert.throws(() => loadDataset(join(dir, "nope.jsonl")), /nope\.jsonl: file not found/);
  const bad = join(dir, "latin1.jsonl");
  const good = JSON.stringify({ task_id: "a", prompt: "p", tests: { kind: "assert", tests: ["assert True"] } });
  writeFileSync(bad, Buffer.concat([Buffer.from(`${good}\n`), Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d, 0x0a])]));
  assert.throws(() => loadDataset(bad), (e: unknown) => e instanceof DatasetError && e.line === 2 && /latin1\.jsonl:2: .*not valid UTF-8/.test(e.message));
  const noTests = join(dir, "no-tests.jsonl");
  writeFileSync(noTests, `${JSON.stringify({ task_id: "a", prompt: "p", tests: { kind: "assert", tests: ["assert True"] } })}\n${JSON.stringify({ task_id: "b", prompt: "p" })}\n`);
  assert.throws(() => loadDataset(noTests, "rlmesh"), /no-tests\.jsonl:2: field "tests": expected an object, got nothing \(the field is missing\)/);
});
