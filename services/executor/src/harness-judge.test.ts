// The harness's judging rules, run on the host with `fork_server.py --once` (no Docker: these
// check comparisons, not isolation; adversarial.test.ts covers the sandbox).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { TestSpec } from "@rlmesh/shared/datasets/index";
import { benchPython } from "./sandbox-bench.js";
import { HARNESS_SOURCE_DIR } from "./sandbox-image.js";
import { FrameDecoder, type SandboxResponse, encodeFrame } from "./sandbox-protocol.js";

const LIMITS = {
  test_timeout_ms: 5000,
  total_timeout_ms: 10000,
  memory_mb: 512,
  file_size_mb: 16,
  max_open_files: 64,
  output_limit_bytes: 1 << 20,
};

function judge(code: string, tests: TestSpec): SandboxResponse {
  const p = spawnSync(benchPython(), ["-I", "-B", join(HARNESS_SOURCE_DIR, "fork_server.py"), "--once"], {
    input: encodeFrame({ id: "t", code, tests, limits: LIMITS }),
    timeout: 30_000,
    env: {},
  });
  const [frame] = new FrameDecoder().push(p.stdout);
  assert.ok(frame, `no response; stderr: ${p.stderr.toString()}`);
  return frame as SandboxResponse;
}

const asserts = (...tests: string[]): TestSpec => ({ kind: "assert", tests });

test("assert-style compares plain data: containers, floats, sets, regex matches", () => {
  const code = "import re\ndef f(x):\n    return {'a': [1, (2.5, {3})]} if x else None\ndef m(s):\n    return re.search('a+', s)";
  const r = judge(
    code,
    asserts(
      "assert f(1) == {'a': [1, (2.5, {3})]}",
      "assert f(0) is None",
      "assert not f(0)",
      "assert 0 < len(f(1)) <= 1",
      "assert m('baa')",
      "assert not m('b')",
    ),
  );
  assert.equal(r.status, "passed", r.detail);
  assert.equal(r.tests_passed, 6);
});

test("assert-style: custom __bool__, __len__ and int subclasses never decide a test", () => {
  const code =
    "class B:\n    def __bool__(self): return True\n    def __len__(self): return 1\nclass Z(int):\n    pass\ndef f():\n    return B()\ndef g():\n    return Z(3)";
  for (const t of ["assert f()", "assert f() and True", "assert not not f()", "assert len([1]) == 1 and f()", "assert g() == 3"]) {
    const r = judge(code, asserts(t));
    assert.equal(r.status, "failed", `${t}: ${r.status} ${r.detail}`);
  }
});

test("call-style: bool is not a number, floats within tolerance, tuples as lists", () => {
  const tests = (expected: unknown): TestSpec => ({ kind: "call", fn: "f", cases: [{ args: [], expected }] });
  assert.equal(judge("def f():\n    return True", tests(1)).status, "failed");
  assert.equal(judge("def f():\n    return 1", tests(1)).status, "passed");
  assert.equal(judge("def f():\n    return 0.1 + 0.2", tests(0.3)).status, "passed");
  assert.equal(judge("def f():\n    return (1, [2, 3])", tests([1, [2, 3]])).status, "passed");
  assert.equal(judge("def f():\n    return {'k': 1}", tests({ k: 2 })).status, "failed");
});

test("stdio: whitespace and trailing newlines tolerated, floats within relative tolerance", () => {
  const spec: TestSpec = { kind: "stdio", cases: [{ input: "", output: "1 2\n3.0000001\n" }] };
  assert.equal(judge("print('1   2  ')\nprint(3.0)\nprint()", spec).status, "passed");
  assert.equal(judge("print('1 2')\nprint(3.1)", spec).status, "failed");
  assert.equal(judge("print('1 2 3')", spec).status, "failed");
});

test("the judge process: the issue's liar object fails, stateful candidates work through handles", () => {
  const mad: TestSpec = {
    kind: "assert",
    setup: "def check(candidate):\n    assert abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6\n",
    tests: ["check(mean_absolute_deviation)"],
    entry_point: "mean_absolute_deviation",
  };
  const liar = judge("class Liar:\n    def __sub__(self, other):\n        return 0\ndef mean_absolute_deviation(numbers):\n    return Liar()", mad);
  assert.equal(liar.status, "failed", liar.detail);
  assert.match(liar.detail, /NotPlainData/);
  const stack =
    "class Stack:\n    def __init__(self): self.items = []\n    def push(self, x): self.items.append(x)\n    def pop(self): return self.items.pop()\n    def __len__(self): return len(self.items)\ndef gen(n):\n    yield from range(n)";
  const r = judge(stack, asserts("s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2 and s.pop() == 2", "assert list(gen(3)) == [0, 1, 2]", "s = Stack()\nassert s == s"));
  assert.equal(r.tests_passed, 2, r.detail);
  assert.equal(r.status, "failed", "comparing a candidate object is refused");
});

test("the judge process: a candidate's len/sorted/math never replace the tests' own", () => {
  const code = "len = lambda x: 3\ndef sorted(x, **k):\n    return [1, 2, 3]\nclass math:\n    isclose = staticmethod(lambda *a, **k: True)\ndef f(x):\n    return [9]";
  for (const t of ["assert len(f(1)) == 3", "assert sorted(f(1)) == [1, 2, 3]", "assert math.isclose(f(1)[0], 2.5)"]) {
    const r = judge(code, asserts(t));
    assert.notEqual(r.status, "passed", `${t}: ${r.detail}`);
  }
  assert.equal(judge("def sum(a, b):\n    return a + b", asserts("assert sum(10, 15) == 25")).status, "passed");
});
