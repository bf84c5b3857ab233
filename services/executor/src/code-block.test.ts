import { test } from "node:test";
import assert from "node:assert/strict";
import { asResponse, extractLastCodeBlock } from "./code-block.js";

test("the last closed fenced block is the program", () => {
  const r = "First:\n```python\nx = 1\n```\nthen better:\n```py\ndef f():\n    return 2\n```\ntrailing words";
  assert.equal(extractLastCodeBlock(r), "def f():\n    return 2");
});

test("no block, an empty block or an unclosed (truncated) block is a format error", () => {
  assert.equal(extractLastCodeBlock("def f(): return 1"), null);
  assert.equal(extractLastCodeBlock("```python\n\n```"), null);
  assert.equal(extractLastCodeBlock("```python\ndef f():\n  return 1"), null);
});

test("tilde fences and longer backtick fences work; inner shorter fences stay in the body", () => {
  assert.equal(extractLastCodeBlock("~~~\nprint(1)\n~~~"), "print(1)");
  assert.equal(extractLastCodeBlock("````python\ns = '```'\n````"), "s = '```'");
});

test("asResponse round-trips through extraction", () => {
  assert.equal(extractLastCodeBlock(asResponse("def f():\n    return 3\n\n")), "def f():\n    return 3");
});

test("asResponse keeps a reference that is already a fenced response", () => {
  const r = "```python\ndef f(x):\n    return x + 1\n```";
  assert.equal(asResponse(r), r);
  assert.equal(extractLastCodeBlock(asResponse(r)), "def f(x):\n    return x + 1");
});
