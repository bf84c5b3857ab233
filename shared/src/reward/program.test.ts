import assert from "node:assert/strict";
import { test } from "node:test";
import { codeBlocks, definesName, entryPoints, selectProgram } from "./program.js";

const block = (code: string) => "```python\n" + code + "\n```";

test("the program is the last block that defines the entry point, not a trailing usage example", () => {
  const solution = "def add(a, b):\n    return a + b";
  const response = `Here it is:\n${block(solution)}\nUsage:\n${block("print(add(1, 2))  # 3")}\n`;
  assert.equal(selectProgram(response, entryPoints({ kind: "assert", tests: ["assert add(1, 2) == 3"] })), solution);
  // Where several blocks define it, the last such block wins (a revised solution).
  const revised = "def add(a, b):\n    return b + a";
  const twice = `${block(solution)}\n${block(revised)}\n${block("assert add(2, 2) == 4")}`;
  assert.equal(selectProgram(twice, ["add"]), revised);
  // No block defines it, or a stdin/stdout task: the last block, as before.
  assert.equal(selectProgram(`${block("x = 1")}\n${block("print(input())")}`, ["add"]), "print(input())");
  assert.equal(selectProgram(`${block("x = 1")}\n${block("print(input())")}`, []), "print(input())");
  assert.equal(selectProgram("no code here", ["add"]), null);
  assert.equal(selectProgram("```python\ndef add(a, b):\n", ["add"]), null); // unclosed: truncated generation
});

test("entry points: HumanEval's entry_point, call-style fn, the functions MBPP asserts call", () => {
  assert.deepEqual(entryPoints({ kind: "assert", tests: ["check(candidate)"], entry_point: "mean" }), ["mean"]);
  assert.deepEqual(entryPoints({ kind: "call", fn: "solve", cases: [] }), ["solve"]);
  assert.deepEqual(entryPoints({ kind: "assert", tests: ["assert similar_elements((3, 4), (5, 4)) == (4,)", "assert set(f(1)) == set([1])", "assert math.isclose(g(2), 0.5)"] }), [
    "similar_elements",
    "f",
    "g",
  ]);
  assert.deepEqual(entryPoints({ kind: "stdio", cases: [] }), []);
});

test("definesName: def, async def, class and assignments at the top level only", () => {
  assert.ok(definesName("def f(x):\n  pass", "f"));
  assert.ok(definesName("async def f():\n  pass", "f"));
  assert.ok(definesName("class Solution:\n  pass", "Solution"));
  assert.ok(definesName("f = lambda x: x", "f"));
  assert.ok(definesName("f: Callable = g", "f"));
  assert.ok(!definesName("print(f(1))", "f"));
  assert.ok(!definesName("if f == 1:\n  pass", "f"));
  assert.ok(!definesName("    def f(x):\n        pass", "f"));
  assert.ok(!definesName("def f2(x):\n  pass", "f"));
  assert.deepEqual(codeBlocks(`${block("a")}\n\`\`\`\n\n\`\`\`\n~~~\nb\n~~~`), ["a", "b"]);
});
