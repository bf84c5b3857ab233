// Correct answers that used to score 0 (issue 23), through queue -> executor -> sandbox (both backends): a solution
// followed by a usage block, and return values whose type is a subclass of a plain type.
import { describe } from "node:test";
import assert from "node:assert/strict";
import type { TestSpec } from "@rlmesh/shared/datasets/index";
import type { SandboxBackendName } from "./sandbox-backend.js";
import { backendTest, backendsUnderTest, executorFixture } from "./test-support.js";

const QUEUE = "reward-correct-answers";
const LIMITS = { timeout_ms_per_test: 3000, total_timeout_ms: 8000, memory_mb: 256, output_bytes: 1 << 20 };
const block = (code: string) => "```python\n" + code + "\n```";

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  const fx = executorFixture(QUEUE, backend, `answers-${process.pid}-${backend}`);

  async function reward(response: string, tests: TestSpec): Promise<number> {
    return (await fx.client.score(response, tests, LIMITS)).reward;
  }

  const addTests: TestSpec = { kind: "assert", tests: ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"] };

  test("a solution followed by a usage example in a second block is judged on the solution", async () => {
    const response = `Solution:\n${block("def add(a, b):\n    return a + b")}\n\nExample:\n${block("print(add(2, 3))  # prints 5")}\n`;
    assert.equal(await reward(response, addTests), 1);
    // HumanEval-style entry point, with the example block calling it.
    const he: TestSpec = { kind: "assert", setup: "def check(candidate):\n    assert candidate(4) == 16", tests: ["check(square)"], entry_point: "square" };
    assert.equal(await reward(`${block("def square(x):\n    return x * x")}\n${block("square(3)")}`, he), 1);
  });

  test("the last block that defines the entry point counts: a revision wins, a broken revision loses", async () => {
    const wrongThenRight = `${block("def add(a, b):\n    return a - b")}\nOops, fixed:\n${block("def add(a, b):\n    return a + b")}\n${block("print(add(1, 1))")}`;
    assert.equal(await reward(wrongThenRight, addTests), 1);
    const rightThenWrong = `${block("def add(a, b):\n    return a + b")}\n${block("def add(a, b):\n    return a * b")}`;
    assert.equal(await reward(rightThenWrong, addTests), 0);
  });

  test("return values cross as plain data by their base type: a namedtuple as a tuple, a Counter as a dict", async () => {
    const nt = block("from collections import namedtuple\nPair = namedtuple('Pair', 'lo hi')\ndef bounds(xs):\n    return Pair(min(xs), max(xs))");
    assert.equal(await reward(nt, { kind: "assert", tests: ["assert bounds([3, 1, 2]) == (1, 3)"] }), 1);
    assert.equal(await reward(nt, { kind: "call", fn: "bounds", cases: [{ args: [[3, 1, 2]], expected: [1, 3] }] }), 1);
    const counter = block("from collections import Counter\ndef freq(s):\n    return Counter(s)");
    assert.equal(await reward(counter, { kind: "assert", tests: ["assert freq('aab') == {'a': 2, 'b': 1}"] }), 1);
    // A lying subclass still arrives as its real base value.
    const liar = block("class Liar(int):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return Liar(a + b + 1)");
    assert.equal(await reward(liar, addTests), 0);
  });
}

for (const backend of backendsUnderTest()) describe(`correct answers [${backend}]`, () => suite(backend));
