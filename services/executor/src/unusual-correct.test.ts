// Correct programs that do unusual things, through queue -> executor -> Docker: each must earn
// reward 1 under the two-process judge (test code in the judge process, the candidate reached
// through plain-data stubs, handles for its objects, callbacks for the tests' functions).
import { describe } from "node:test";
import assert from "node:assert/strict";
import type { AssertTests, TestSpec } from "@rlmesh/shared/datasets/index";
import { backendTest, backendsUnderTest, executorFixture, fenced } from "./test-support.js";
import type { SandboxBackendName } from "./sandbox-backend.js";

const QUEUE = "reward-unusual-correct";
const LIMITS = { timeout_ms_per_test: 3000, total_timeout_ms: 8000, memory_mb: 256, output_bytes: 1 << 20 };

function py(src: string): string {
  const lines = src.replace(/^\n/, "").replace(/\s+$/, "").split("\n");
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join("\n");
}
const asserts = (...tests: string[]): AssertTests => ({ kind: "assert", tests });

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  const fx = executorFixture(QUEUE, backend, `unusual-${process.pid}-${backend}`);

  async function passes(program: string, tests: TestSpec): Promise<void> {
    const r = await fx.client.score(fenced(program), tests, LIMITS);
    assert.equal(r.reward, 1, JSON.stringify(r));
  }

  test("heavy printing to stdout and stderr inside the function (under the output cap)", () =>
    passes(
      py(`
        import sys
        def add(a, b):
            for i in range(2000):
                print('step', i, 'of the addition', a, b)
            sys.stderr.write('debug ' * 5000 + '\\n')
            return a + b
      `),
      asserts("assert add(1, 2) == 3", "assert add(5, 5) == 10"),
    ));

  test("deep recursion within the limits (depth 20000 with a raised recursion limit)", () =>
    passes(
      py(`
        import sys
        sys.setrecursionlimit(50000)
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
      `),
      asserts("assert depth(20000) == 20000"),
    ));

  test("threads: a thread pool and plain threads joined before returning", () =>
    passes(
      py(`
        import threading
        from concurrent.futures import ThreadPoolExecutor
        def squares(n):
            with ThreadPoolExecutor(4) as ex:
                return list(ex.map(lambda i: i * i, range(n)))
        def count(n):
            total = [0]
            lock = threading.Lock()
            def work():
                for _ in range(1000):
                    with lock:
                        total[0] += 1
            ts = [threading.Thread(target=work) for _ in range(n)]
            for t in ts: t.start()
            for t in ts: t.join()
            return total[0]
      `),
      asserts("assert squares(5) == [0, 1, 4, 9, 16]", "assert count(4) == 4000"),
    ));

  test("generators: list(), next(), sum() and islice over an infinite one", () =>
    passes(
      py(`
        def squares(n):
            for i in range(n):
                yield i * i
        def naturals():
            i = 0
            while True:
                yield i
                i += 1
      `),
      {
        kind: "assert",
        setup: "import itertools",
        tests: [
          "assert list(squares(4)) == [0, 1, 4, 9]",
          "g = squares(3)\nassert next(g) == 0 and next(g) == 1 and next(g) == 4\ntry:\n    next(g)\n    assert False\nexcept StopIteration:\n    pass",
          "assert sum(squares(4)) == 14",
          "assert list(itertools.islice(naturals(), 5)) == [0, 1, 2, 3, 4]",
        ],
      },
    ));

  test("a class with its own __eq__ and __hash__ used inside the solution", () =>
    passes(
      py(`
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __eq__(self, other):
                return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)
            def __hash__(self):
                return hash((self.x, self.y))
        def unique_points(pairs):
            seen = []
            for x, y in pairs:
                p = Point(x, y)
                if p not in seen:
                    seen.append(p)
            return [(p.x, p.y) for p in seen]
        def count_distinct(pairs):
            return len({Point(x, y) for x, y in pairs})
      `),
      asserts("assert unique_points([(1, 2), (1, 2), (3, 4)]) == [(1, 2), (3, 4)]", "assert count_distinct([(0, 0), (0, 0), (1, 0)]) == 2"),
    ));

  test("`if __name__ == '__main__':` with input() is not run in a function task", () =>
    passes(
      py(`
        def triple(x):
            return 3 * x
        if __name__ == "__main__":
            n = int(input())
            print(triple(n))
      `),
      asserts("assert triple(2) == 6", "assert triple(-1) == -3"),
    ));

  test("stdin reads in a function task: at load time and inside the function (empty input)", () =>
    passes(
      py(`
        import sys
        DATA = sys.stdin.read()
        def add(a, b):
            extra = sys.stdin.read()
            return a + b + len(DATA) + len(extra)
      `),
      asserts("assert add(1, 2) == 3"),
    ));

  test("a stateful class the tests drive: methods, attributes, len, iter, indexing, str", () =>
    passes(
      py(`
        class Stack:
            def __init__(self):
                self.items = []
            def push(self, x):
                self.items.append(x)
            def pop(self):
                return self.items.pop()
            def peek(self):
                return self.items[-1]
            def __len__(self):
                return len(self.items)
            def __iter__(self):
                return iter(self.items)
            def __getitem__(self, i):
                return self.items[i]
            def __str__(self):
                return 'Stack(%s)' % ', '.join(map(str, self.items))
      `),
      asserts(
        "s = Stack()\ns.push(1)\ns.push(2)\ns.push(3)\nassert len(s) == 3\nassert s.pop() == 3\nassert s.peek() == 2\nassert list(s) == [1, 2]\nassert s[0] == 1\nassert str(s) == 'Stack(1, 2)'\nassert s.items == [1, 2]\ns.limit = 5\nassert s.limit == 5",
      ),
    ));

  test("linked lists: candidate objects passed back to candidate functions", () =>
    passes(
      py(`
        class Node:
            def __init__(self, val, nxt=None):
                self.val, self.next = val, nxt
        def from_list(xs):
            head = None
            for x in reversed(xs):
                head = Node(x, head)
            return head
        def to_list(node):
            out = []
            while node:
                out.append(node.val)
                node = node.next
            return out
        def reverse(node):
            prev = None
            while node:
                node.next, prev, node = prev, node, node.next
            return prev
      `),
      asserts("assert to_list(reverse(from_list([1, 2, 3]))) == [3, 2, 1]", "assert to_list(reverse(Node(1, Node(2)))) == [2, 1]"),
    ));

  test("namedtuple, Counter, OrderedDict and defaultdict answers compare like their plain forms", () =>
    passes(
      py(`
        from collections import namedtuple, Counter, OrderedDict, defaultdict
        Pair = namedtuple('Pair', 'lo hi')
        def bounds(xs):
            return Pair(min(xs), max(xs))
        def freq(s):
            return Counter(s)
        def ordered(s):
            return OrderedDict((c, i) for i, c in enumerate(s))
        def groups(words):
            d = defaultdict(list)
            for w in words:
                d[len(w)].append(w)
            return d
      `),
      asserts(
        "assert bounds([3, 1, 2]) == (1, 3)",
        "assert freq('aab') == {'a': 2, 'b': 1}\nassert freq('aab').most_common(1) == [('a', 2)]",
        "assert ordered('ab') == {'a': 0, 'b': 1}",
        "assert groups(['a', 'bb', 'c']) == {1: ['a', 'c'], 2: ['bb']}",
      ),
    ));

  test("the tests pass functions in: a lambda, key=len, a builtin type", () =>
    passes(
      py(`
        def apply_all(fn, xs):
            return [fn(x) for x in xs]
        def sort_by(xs, key):
            return sorted(xs, key=key)
        def convert(xs, typ):
            return [typ(x) for x in xs]
      `),
      asserts("assert apply_all(lambda v: v * 10, [1, 2]) == [10, 20]", "assert sort_by(['ccc', 'a', 'bb'], key=len) == ['a', 'bb', 'ccc']", "assert convert(['1', '2'], int) == [1, 2]"),
    ));

  test("HumanEval-style check(candidate) with a float tolerance", () =>
    passes(
      py(`
        def mean_absolute_deviation(numbers):
            mean = sum(numbers) / len(numbers)
            return sum(abs(x - mean) for x in numbers) / len(numbers)
      `),
      {
        kind: "assert",
        setup: "def check(candidate):\n    assert abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6\n    assert abs(candidate([1.0, 2.0, 3.0, 4.0]) - 1.0) < 1e-6\n",
        tests: ["check(mean_absolute_deviation)"],
        entry_point: "mean_absolute_deviation",
      },
    ));

  test("KodCode-style `from solution import ...` with test functions and an expected exception", () =>
    passes(
      py(`
        def safe_div(a, b):
            if b == 0:
                raise ValueError('division by zero')
            return a / b
      `),
      asserts(
        "from solution import safe_div\n\ndef test_div():\n    assert safe_div(6, 3) == 2.0\n\ndef test_zero():\n    try:\n        safe_div(1, 0)\n    except ValueError as e:\n        assert 'zero' in str(e)\n    else:\n        assert False\n\ntest_div()\ntest_zero()",
        "import solution\nassert solution.safe_div(1, 4) == 0.25",
      ),
    ));

  test("big integers (thousands of digits) and exact float/bytes/set/complex answers", () =>
    passes(
      py(`
        import math
        def fact(n):
            return math.factorial(n)
        def misc():
            return (b'\\x00\\xff', {1, 2}, frozenset({'a'}), 1 + 2j, [0.1, -0.0, float('inf')])
      `),
      {
        kind: "assert",
        setup: "import math",
        tests: ["assert fact(3000) == math.factorial(3000)", "assert misc() == (b'\\x00\\xff', {1, 2}, frozenset({'a'}), 1 + 2j, [0.1, -0.0, float('inf')])"],
      },
    ));

  test("a child process and a temporary file inside the function", () =>
    passes(
      py(`
        import os
        def via_child(x):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.write(w, str(x * 2).encode())
                os._exit(0)
            os.close(w)
            data = os.read(r, 100)
            os.close(r)
            os.waitpid(pid, 0)
            return int(data)
        def via_file(text):
            with open('scratch.txt', 'w') as f:
                f.write(text)
            with open('scratch.txt') as f:
                return f.read().upper()
      `),
      asserts("assert via_child(21) == 42", "assert via_file('abc') == 'ABC'"),
    ));

  test("closures and functions returned by the candidate", () =>
    passes("def make_adder(n):\n    def add(x):\n        return x + n\n    return add", asserts("add5 = make_adder(5)\nassert add5(3) == 8\nassert make_adder(-1)(1) == 0")));

  test("LeetCode-style class Solution in a call-style task", () =>
    passes(
      py(`
        from typing import List
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return [seen[target - x], i]
                    seen[x] = i
      `),
      {
        kind: "call",
        fn: "twoSum",
        cases: [
          { args: [[2, 7, 11, 15], 9], expected: [0, 1] },
          { args: [[3, 2, 4], 6], expected: [1, 2] },
        ],
      },
    ));

  test("a stdin/stdout program with a main() guard reading sys.stdin", () =>
    passes(
      py(`
        import sys
        def main():
            data = sys.stdin.read().split()
            print(sum(map(int, data)))
        if __name__ == "__main__":
            main()
      `),
      {
        kind: "stdio",
        cases: [
          { input: "1 2 3\n", output: "6\n" },
          { input: "10\n-10\n", output: "0\n" },
        ],
      },
    ));

  test("a regex match object as the answer of an assert", () =>
    passes(
      "import re\ndef find(s):\n    return re.search(r'(a+)(b)?', s)",
      asserts("assert find('xaab')", "assert not find('xyz')", "assert find('xaab').group(1) == 'aa'", "assert find('ca').groups() == ('a', None)"),
    ));

  test("MBPP-style function named like a builtin (def sum) and a test relying on the program's import", () =>
    passes(
      "import sys\ndef sum(a, b):\n    return a + b\ndef size(t):\n    return sys.getsizeof(t)",
      asserts("assert sum(10, 15) == 25", "assert size((1, 2, 3)) == sys.getsizeof((1, 2, 3))"),
    ));

  test("memoised recursion and a NaN that the test expects", () =>
    passes(
      "from functools import lru_cache\n@lru_cache(None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\ndef undefined():\n    return float('nan')",
      { kind: "assert", setup: "import math", tests: ["assert fib(300) == 222232244629420445529739893461909967206666939096499764990979600", "assert math.isnan(undefined())"] },
    ));
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
