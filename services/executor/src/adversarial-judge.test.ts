// Attacks on the two-process judge (issue 19), through queue -> executor -> Docker. Test code
// runs in a judge process that holds no candidate code; the candidate is reached through stubs
// that exchange plain data with the candidate process. Every case here would earn reward 1 if
// the candidate could reach the judge's comparisons, objects, memory or pipes; each must earn 0,
// within its limits, and the executor must keep serving from the same container (a correct
// canary right after each attack). Grouped by category; each `attack(...)` is one case.
import { describe } from "node:test";
import assert from "node:assert/strict";
import type { AssertTests, CallTests, TestSpec } from "@rlmesh/shared/datasets/index";
import type { RewardResult, RewardStatus } from "@rlmesh/shared/reward/reward-result";
import { backendTest, backendsUnderTest, executorFixture, fenced, sandboxIdsOf } from "./test-support.js";
import type { SandboxBackendName } from "./sandbox-backend.js";

const OWNER = `adversarial-judge-${process.pid}`;
const QUEUE = "reward-adversarial-judge";
const LIMITS = { timeout_ms_per_test: 1500, total_timeout_ms: 4000, memory_mb: 256, output_bytes: 1 << 20 };
const SLACK_MS = 3000;

/** Python source from an indented template literal (common indentation removed). */
function py(src: string): string {
  const lines = src.replace(/^\n/, "").replace(/\s+$/, "").split("\n");
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join("\n");
}

const ADD: AssertTests = { kind: "assert", tests: ["assert add(1, 2) == 3", "assert add(-5, 5) == 0", "assert add(10, 20) == 30"] };
const ADD_CALL: CallTests = {
  kind: "call",
  fn: "add",
  cases: [
    { args: [1, 2], expected: 3 },
    { args: [10, 20], expected: 30 },
  ],
};
const GOOD = "def add(a, b):\n    return a + b";
/** The HumanEval-style test: `abs(candidate(...) - 2/3) < 1e-6`. */
const MAD: AssertTests = {
  kind: "assert",
  setup: py(String.raw`
    def check(candidate):
        assert abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6
        assert abs(candidate([1.0, 2.0, 3.0, 4.0]) - 1.0) < 1e-6
  `),
  tests: ["check(mean_absolute_deviation)"],
  entry_point: "mean_absolute_deviation",
};
const asserts = (...tests: string[]): AssertTests => ({ kind: "assert", tests });

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  const owner = `${OWNER}-${backend}`;
  const fx = executorFixture(QUEUE, backend, owner);

  async function sandboxIds(): Promise<string[]> {
    return sandboxIdsOf(fx.executor, owner);
  }

  /** The candidate earns 0 with one of `statuses`, in time; then a correct candidate still earns 1. */
  async function scoreAttack(program: string, statuses: RewardStatus[], tests: TestSpec = ADD): Promise<RewardResult> {
    const ids = await sandboxIds();
    const t0 = Date.now();
    const r = await fx.client.score(fenced(program), tests, LIMITS);
    const elapsed = Date.now() - t0;
    assert.equal(r.reward, 0, `reward must be 0, got ${JSON.stringify(r)}`);
    assert.ok(statuses.includes(r.status), `status ${r.status} not in ${statuses.join("|")}: ${JSON.stringify(r)}`);
    assert.ok(elapsed < LIMITS.total_timeout_ms + SLACK_MS, `verdict took ${elapsed} ms`);
    const canary = await fx.client.score(fenced(GOOD), ADD, LIMITS);
    assert.equal(canary.reward, 1, `canary after the attack: ${JSON.stringify(canary)}`);
    assert.deepEqual(await sandboxIds(), ids, "the sandbox container had to be replaced");
    return r;
  }

  async function attack(program: string, statuses: RewardStatus[], tests: TestSpec = ADD): Promise<void> {
    await scoreAttack(program, statuses, tests);
  }

  // ---------------------------------------------------------------- lying objects

  test("the issue's liar object: __sub__ returns 0, so abs(x - 2/3) < 1e-6 would be True", async () => {
    const r = await scoreAttack(
      py(`
        class Liar:
            def __sub__(self, other):
                return 0
        def mean_absolute_deviation(numbers):
            return Liar()
      `),
      ["failed"],
      MAD,
    );
    assert.match(r.reason, /NotPlainData/);
  });

  test("liar with every comparison, truth test, hash, len and contains lying", () =>
    attack(
      py(`
        class Liar:
            def __eq__(self, o): return True
            def __ne__(self, o): return False
            def __lt__(self, o): return True
            def __le__(self, o): return True
            def __gt__(self, o): return True
            def __ge__(self, o): return True
            def __bool__(self): return True
            def __hash__(self): return hash(3)
            def __len__(self): return 1
            def __contains__(self, o): return True
            def __sub__(self, o): return 0
            __rsub__ = __sub__
            def __abs__(self): return 0
        def add(a, b):
            return Liar()
      `),
      ["failed"],
      asserts("assert add(1, 2) == 3", "assert 3 == add(1, 2)", "assert add(1, 2) in {3}", "assert not add(1, 2) != 3", "assert 3 in add(1, 2)"),
    ));

  test("reflected arithmetic liar: expected - result and result.__rsub__", () =>
    attack(
      py(`
        class Liar:
            def __rsub__(self, o): return 0.0
            def __float__(self): return 3.0
            def __round__(self, n=None): return 3
        def add(a, b):
            return Liar()
      `),
      ["failed"],
      asserts("assert abs(3 - add(1, 2)) < 1e-9", "assert round(add(1, 2)) == 3", "assert float(add(1, 2)) == 3.0"),
    ));

  test("lying __hash__/__eq__ to pass set and dict membership", () =>
    attack(
      py(`
        class K:
            def __hash__(self): return hash(3)
            def __eq__(self, o): return True
        def add(a, b):
            return K()
      `),
      ["failed"],
      asserts("assert add(1, 2) in {3: 'x'}", "assert {add(1, 2)} == {3}", "assert [add(1, 2)] == [3]"),
    ));

  test("lying __repr__/__str__ with an __eq__ that compares reprs", () =>
    attack(
      py(`
        class R:
            def __repr__(self): return '3'
            __str__ = __repr__
            def __eq__(self, o): return repr(self) == repr(o)
        def add(a, b):
            return R()
      `),
      ["failed"],
    ));

  test("lying __class__ (isinstance would say int) with __eq__", () =>
    attack(
      py(`
        class Fake:
            __class__ = property(lambda self: int)
            def __eq__(self, o): return True
        def add(a, b):
            return Fake()
      `),
      ["failed"],
      asserts("assert isinstance(add(1, 2), int) and add(1, 2) == 3"),
    ));

  test("a __bool__ that alternates True/False across calls (passes assert f / assert not f natively)", () =>
    attack(
      py(`
        class Flip:
            n = 0
            def __bool__(self):
                Flip.n += 1
                return Flip.n % 2 == 1
        def is_prime(n):
            return Flip()
      `),
      ["failed"],
      asserts("assert is_prime(7)", "assert not is_prime(8)", "assert is_prime(11)"),
    ));

  test("a lying __iter__/__len__ list-like with __eq__ True", () =>
    attack(
      py(`
        class Seq:
            def __eq__(self, o): return True
            def __len__(self): return 3
            def __iter__(self): return iter(())
        def f(x):
            return Seq()
      `),
      ["failed"],
      asserts("assert f(1) == [1, 2, 3]", "assert list(f(1)) == [1, 2, 3]"),
    ));

  // ---------------------------------------------------------------- subclasses of builtins

  test("int subclass with __eq__ and __hash__ overridden", () =>
    attack(
      py(`
        class I(int):
            def __eq__(self, o): return True
            def __ne__(self, o): return False
            __hash__ = int.__hash__
        def add(a, b):
            return I(0)
      `),
      ["failed"],
    ));

  test("str subclass overriding __eq__ and __contains__", () =>
    attack(
      py(`
        class S(str):
            def __eq__(self, o): return True
            def __contains__(self, o): return True
            __hash__ = str.__hash__
        def greet(name):
            return S('nope')
      `),
      ["failed"],
      asserts("assert greet('bob') == 'hello bob'", "assert 'bob' in greet('bob')"),
    ));

  test("float subclass lying in __sub__, __abs__ and __lt__", () =>
    attack(
      py(`
        class F(float):
            def __sub__(self, o): return F(0.0)
            def __rsub__(self, o): return F(0.0)
            def __abs__(self): return 0.0
            def __lt__(self, o): return True
        def mean_absolute_deviation(numbers):
            return F(123.0)
      `),
      ["failed"],
      MAD,
    ));

  test("list subclass overriding __eq__, __len__ and __getitem__", () =>
    attack(
      py(`
        class L(list):
            def __eq__(self, o): return True
            def __len__(self): return 3
            def __getitem__(self, i): return 0
        def sort_list(xs):
            return L()
      `),
      ["failed"],
      asserts("assert sort_list([3, 1, 2]) == [1, 2, 3]", "assert sort_list([2, 1]) == [1, 2]"),
    ));

  test("dict and tuple subclasses with __eq__ overridden, nested inside plain containers", () =>
    attack(
      py(`
        class D(dict):
            def __eq__(self, o): return True
        class T(tuple):
            def __eq__(self, o): return True
        def f(x):
            return [D(), (T(),)]
      `),
      ["failed"],
      asserts("assert f(1) == [{'a': 1}, ((1, 2),)]"),
    ));

  // ---------------------------------------------------------------- NaN and odd values

  test("NaN answers: ==, tolerance checks and math.isclose all fail", () =>
    attack(
      py(`
        def mean_absolute_deviation(numbers):
            return float('nan')
      `),
      ["failed"],
      {
        kind: "assert",
        setup: "import math\n" + MAD.setup,
        tests: ["check(mean_absolute_deviation)", "assert mean_absolute_deviation([1.0]) == 0.0", "assert math.isclose(mean_absolute_deviation([2.0]), 0.0)"],
        entry_point: "mean_absolute_deviation",
      },
    ));

  test("NaN inside a container, with the expected list built by the test", () =>
    attack("def f(x):\n    return [float('nan'), float('nan')]", ["failed"], asserts("assert f(1) == [0.5, 0.5]", "assert sorted(f(1)) == [0.5, 0.5]")));

  test("__reduce__ payloads (would run code wherever they were unpickled)", () =>
    attack(
      py(`
        import os
        class Evil:
            def __reduce__(self):
                return (os._exit, (0,))
            def __eq__(self, o): return True
        def add(a, b):
            return Evil()
      `),
      ["failed"],
      ADD_CALL,
    ));

  test("a self-referential list and a value nested 100000 deep", () =>
    attack(
      py(`
        def add(a, b):
            if a == 1:
                x = []
                x.append(x)
                return x
            v = 3
            for _ in range(100000):
                v = [v]
            return v
      `),
      ["failed"],
      asserts("assert add(1, 2) == 3", "assert add(2, 1) == 3"),
    ));

  test("an answer of 60 MB (over the reply cap) is a failure, not a crash", () =>
    attack("def add(a, b):\n    return 'x' * (60 * 2 ** 20)", ["runtime_error", "memory"]));

  // ---------------------------------------------------------------- exceptions, exits, shutdown

  test("StopIteration from a plain call would end map() early: all(map(f, xs)) is then True", () =>
    attack(
      "def is_even(n):\n    raise StopIteration",
      ["runtime_error"],
      asserts("assert all(map(is_even, [2, 4, 6]))", "assert list(map(is_even, [2])) == [True]"),
    ));

  test("an exception raised from __del__ and one at interpreter shutdown", () =>
    attack(
      py(`
        import atexit, os, sys
        class Bomb:
            def __del__(self):
                raise SystemExit(0)
        atexit.register(lambda: os._exit(0))
        sys.excepthook = lambda *a: os._exit(0)
        def add(a, b):
            Bomb()
            return 0
      `),
      ["failed"],
    ));

  test("__del__ that forges frames on every descriptor then exits 0", () =>
    attack(
      py(`
        import os, json, struct
        def frame(o):
            b = json.dumps(o).encode()
            return struct.pack('>I', len(b)) + b
        class Forger:
            def __del__(self):
                for fd in range(3, 64):
                    for k in range(1, 8):
                        try:
                            os.write(fd, frame({'r': k, 'v': 3}))
                            os.write(fd, b'{"n":"x","t":"res","i":0,"ok":true}\\n')
                        except OSError:
                            pass
                os._exit(0)
        def add(a, b):
            Forger()
            return 0
      `),
      ["failed", "runtime_error"],
    ));

  test("sys.exit(0) and KeyboardInterrupt raised inside the tested function", async () => {
    await attack("import sys\ndef add(a, b):\n    sys.exit(0)", ["runtime_error"], ADD_CALL);
    await attack("def add(a, b):\n    raise KeyboardInterrupt", ["runtime_error"]);
  });

  test("an exception whose __str__ never returns", () =>
    attack("class E(Exception):\n    def __str__(self):\n        while True:\n            pass\ndef add(a, b):\n    raise E()", ["timeout"]));

  // ---------------------------------------------------------------- tracing, patching, replacing

  test("sys.settrace rewriting every frame's locals (ok/result/passed) to True", () =>
    attack(
      py(`
        import sys, ctypes
        def tracer(frame, event, arg):
            for k in ('ok', 'result', 'passed', 'matched', 'expected'):
                if k in frame.f_locals:
                    frame.f_locals[k] = True
                    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
            return tracer
        sys.settrace(tracer)
        def add(a, b):
            sys.settrace(tracer)
            return 0
      `),
      ["failed"],
    ));

  test("sys.setprofile exiting 0 when the tested function returns", () =>
    attack(
      py(`
        import sys, os
        def prof(frame, event, arg):
            if event == 'return' and frame.f_code.co_name == 'add':
                os._exit(0)
        sys.setprofile(prof)
        def add(a, b):
            return 0
      `),
      ["runtime_error"],
    ));

  test("patched builtins: abs, isinstance, len, sorted, __import__, AssertionError", () =>
    attack(
      py(`
        import builtins
        builtins.abs = lambda x: 0
        builtins.isinstance = lambda *a: True
        builtins.len = lambda x: 3
        builtins.sorted = lambda x, **k: [1, 2, 3]
        class NoFail(BaseException):
            pass
        builtins.AssertionError = NoFail
        _imp = builtins.__import__
        builtins.__import__ = lambda name, *a, **k: _imp(name, *a, **k)
        def mean_absolute_deviation(numbers):
            return 99.0
      `),
      ["failed", "runtime_error"],
      MAD,
    ));

  test("patched sys.modules and the harness modules present in the candidate process", () =>
    attack(
      py(`
        import sys, types
        fake = types.ModuleType('math')
        fake.isclose = lambda *a, **k: True
        sys.modules['math'] = fake
        for name in ('judge', 'runner', 'plain_data', 'fork_server'):
            m = sys.modules.get(name)
            if m is None:
                continue
            for attr in ('values_match', 'stdout_matches', '_outcome', 'verdict'):
                if hasattr(m, attr):
                    setattr(m, attr, lambda *a, **k: True)
        def add(a, b):
            return 0
      `),
      ["failed"],
      ADD_CALL,
    ));

  test("replaced AssertionError in the candidate's builtins, raising it from the function", () =>
    attack(
      py(`
        import builtins
        class AssertionError(Exception):
            pass
        builtins.AssertionError = AssertionError
        def add(a, b):
            raise AssertionError('passed')
      `),
      ["runtime_error", "failed"],
    ));

  test("candidate globals shadowing len, sorted and math (the tests' own names)", () =>
    attack(
      py(`
        len = lambda x: 3
        def sorted(x, **k):
            return [1, 2, 3]
        class math:
            @staticmethod
            def isclose(*a, **k):
                return True
        def f(x):
            return [9]
      `),
      ["failed", "runtime_error"],
      asserts("assert len(f(1)) == 3", "assert sorted(f(1)) == [1, 2, 3]", "assert math.isclose(f(1)[0], 2.5)"),
    ));

  test("`from solution import *` must not hand the tests a lying abs", () =>
    attack(
      "def abs(x):\n    return 0\ndef mean_absolute_deviation(numbers):\n    return 5.0",
      ["failed"],
      { kind: "assert", tests: ["from solution import *\nassert abs(mean_absolute_deviation([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6"] },
    ));

  test("a liar passed to a test's callback (the test's lambda compares it)", () =>
    attack(
      py(`
        class Liar:
            def __eq__(self, o): return True
        def apply(fn, x):
            return fn(Liar())
      `),
      ["failed"],
      asserts("assert apply(lambda v: v == 3, 1) is True"),
    ));

  test("a generator yielding liar objects", () =>
    attack(
      "class L:\n    def __eq__(self, o): return True\ndef gen(n):\n    for _ in range(n):\n        yield L()",
      ["failed"],
      asserts("assert list(gen(2)) == [1, 2]"),
    ));

  // ---------------------------------------------------------------- processes and descriptors

  test("a thread that outlives the call and forges answers on every descriptor", () =>
    attack(
      py(`
        import os, json, struct, threading, time
        def frame(o):
            b = json.dumps(o).encode()
            return struct.pack('>I', len(b)) + b
        def spam():
            while True:
                for fd in range(3, 64):
                    for k in range(1, 10):
                        try:
                            os.write(fd, frame({'r': k, 'v': 3}))
                        except OSError:
                            pass
                time.sleep(0.001)
        def add(a, b):
            threading.Thread(target=spam, daemon=True).start()
            time.sleep(0.05)
            return 0
      `),
      ["failed", "runtime_error"],
    ));

  test("forked children writing forged frames and nonce-less results to inherited descriptors", () =>
    attack(
      py(`
        import os, json, struct
        def frame(o):
            b = json.dumps(o).encode()
            return struct.pack('>I', len(b)) + b
        def add(a, b):
            if os.fork() == 0:
                for fd in range(0, 64):
                    for k in range(1, 10):
                        try:
                            os.write(fd, frame({'r': k, 'v': 3}))
                            os.write(fd, b'{"t":"res","i":0,"ok":true}\\n{"t":"end"}\\n')
                        except OSError:
                            pass
                os._exit(0)
            os.wait()
            return 0
      `),
      ["failed", "runtime_error"],
    ));

  test("os.execv at load time and inside the tested function", async () => {
    // The new program writes forged end markers / frames to every descriptor it still has.
    const forger = py(String.raw`
      import os, sys
      FORGER = "import os, struct\nfor fd in range(64):\n    try:\n        os.write(fd, b'{\"t\":\"end\"}\\n' + struct.pack('>I', 2) + b'{}')\n    except OSError:\n        pass\n"
    `);
    await attack(`${forger}\nos.execv(sys.executable, [sys.executable, '-c', FORGER])\ndef add(a, b):\n    return a + b`, ["runtime_error"]);
    await attack(`${forger}\ndef add(a, b):\n    os.execv(sys.executable, [sys.executable, '-c', FORGER])`, ["runtime_error"]);
  });

  test("a forged frame with a 2 GiB length and a forged 100000-deep JSON answer", async () => {
    const writeAll = (payload: string) =>
      py(`
        import os, struct
        def add(a, b):
            data = ${payload}
            for fd in range(3, 64):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
            return 0
      `);
    await attack(writeAll("struct.pack('>I', 2 ** 31) + b'x' * 100"), ["failed", "runtime_error"]);
    await attack(writeAll("(lambda b: struct.pack('>I', len(b)) + b)(b'{\"r\":1,\"v\":' + b'[' * 100000 + b']' * 100000 + b'}')"), [
      "failed",
      "runtime_error",
    ]);
  });

  test("killing every other process it can see (the judge included)", () =>
    attack(
      py(`
        import os, signal
        for p in os.listdir('/proc'):
            if p.isdigit() and int(p) not in (1, os.getpid()):
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
        def add(a, b):
            return 0
      `),
      ["runtime_error", "memory", "failed"],
    ));

  test("stopping the judge with SIGSTOP", () =>
    attack(
      py(`
        import os, signal
        def add(a, b):
            for p in os.listdir('/proc'):
                if p.isdigit() and int(p) not in (1, os.getpid()):
                    try:
                        os.kill(int(p), signal.SIGSTOP)
                    except OSError:
                        pass
            return a + b
      `),
      ["timeout"],
    ));

  // ---------------------------------------------------------------- the judge process serves several runs
  // PID 1 keeps a judge process after a clean run (up to 64 runs) and hands it the next run's
  // pipes; candidates are still forked fresh for every run. Nothing of one run may reach the next.

  test("a candidate object that test code kept in a module is dead for the next run", async () => {
    const BOX = py(`
      class Box:
          def get(self):
              return 7
      def make():
          return Box()
    `);
    let second: RewardResult | undefined;
    // A judge process serves at most 64 runs: if the first run happened to be its last, the
    // second meets a fresh one (no kept object at all); one more try then meets a kept one.
    for (let i = 0; i < 2; i++) {
      const first = await fx.client.score(fenced(BOX), asserts("import math\nmath._rlmesh_kept = make()\nassert make().get() == 7"), LIMITS);
      assert.equal(first.reward, 1, JSON.stringify(first));
      second = await fx.client.score(fenced(BOX), asserts("import math\nassert math._rlmesh_kept.get() == 7"), LIMITS);
      if (!/has no attribute '_rlmesh_kept'/.test(second.reason)) break;
    }
    assert.equal(second!.reward, 0, JSON.stringify(second));
    assert.equal(second!.status, "failed", JSON.stringify(second));
    assert.match(second!.reason, /NotPlainData.*earlier run/);
  });

  test("a test that replaced a builtin does not change the next run's builtins", async () => {
    const patched = await fx.client.score(fenced(GOOD), asserts("import builtins\nbuiltins.sorted = lambda *a, **k: [42]\nassert add(1, 2) == 3"), LIMITS);
    assert.equal(patched.reward, 1, JSON.stringify(patched));
    const next = await fx.client.score(fenced(GOOD), asserts("assert sorted([2, 1]) == [1, 2]", "assert add(1, 2) == 3"), LIMITS);
    assert.equal(next.reward, 1, JSON.stringify(next));
  });

  test("SIGSTOP to every process around the judge's last report: the next candidate is judged in time", async () => {
    for (const delay of [0, 0.001, 0.005, 0.02]) {
      await attack(
        py(`
          import os, signal, time
          calls = [0]
          def add(a, b):
              calls[0] += 1
              if calls[0] < 3:
                  return a + b
              if os.fork() == 0:
                  time.sleep(${delay})
                  for p in os.listdir('/proc'):
                      if p.isdigit() and int(p) not in (1, os.getpid()):
                          try:
                              os.kill(int(p), signal.SIGSTOP)
                          except OSError:
                              pass
                  os._exit(0)
              return 0
        `),
        ["failed", "timeout"],
      );
      const t0 = Date.now();
      const canary = await fx.client.score(fenced(GOOD), ADD, LIMITS);
      assert.equal(canary.reward, 1, JSON.stringify(canary));
      assert.ok(Date.now() - t0 < LIMITS.total_timeout_ms, `the next candidate took ${Date.now() - t0} ms (delay ${delay})`);
    }
  });

  // ---------------------------------------------------------------- looking for the judge's data

  /** Each finder looks for `assert add(1, 2) == N` style text and answers N; 0 when nothing is found. */
  const FIND_EXPECTED = py(String.raw`
    import re
    def expected_from(text, a, b):
        if isinstance(text, bytes):
            text = text.decode('latin-1')
        m = re.search(r'add\(\s*%d\s*,\s*%d\s*\)\s*==\s*(-?\d+)' % (a, b), text)
        return int(m.group(1)) if m else None
  `);

  test("searching gc for the test code, expected values or the nonce", () =>
    attack(
      FIND_EXPECTED +
        "\n" +
        py(`
          import gc
          def add(a, b):
              for o in gc.get_objects():
                  for s in ([o] if isinstance(o, (str, bytes)) else list(o.values()) if isinstance(o, dict) else list(o) if isinstance(o, (list, tuple)) else []):
                      if isinstance(s, (str, bytes)):
                          v = expected_from(s, a, b)
                          if v is not None:
                              return v
              return 0
        `),
      ["failed"],
    ));

  test("walking frames up from the call (f_back, f_globals, f_locals) for the tests", () =>
    attack(
      FIND_EXPECTED +
        "\n" +
        py(`
          import sys
          def add(a, b):
              f = sys._getframe()
              while f is not None:
                  for d in (f.f_locals, f.f_globals):
                      for v in list(d.values()):
                          for s in ([v] if isinstance(v, (str, bytes)) else v if isinstance(v, (list, tuple)) else v.values() if isinstance(v, dict) else []):
                              try:
                                  r = expected_from(s if isinstance(s, (str, bytes)) else repr(s), a, b)
                              except Exception:
                                  r = None
                              if r is not None:
                                  return r
                  f = f.f_back
              return 0
        `),
      ["failed"],
    ));

  const SCAN_OWN_MEMORY =
    FIND_EXPECTED +
    "\n" +
    py(`
      import ctypes, os
      # Dumpable again (allowed for itself), so /proc/self/mem opens; unmapped ranges read as EIO.
      ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
      def add(a, b):
          with open('/proc/self/maps') as maps:
              regions = [line.split() for line in maps]
          fd = os.open('/proc/self/mem', os.O_RDONLY)
          try:
              for r in regions:
                  lo, hi = (int(x, 16) for x in r[0].split('-'))
                  if not r[1].startswith('r') or hi - lo > 256 << 20:
                      continue
                  for at in range(lo, hi, (1 << 20) - 64):
                      try:
                          chunk = os.pread(fd, min(1 << 20, hi - at), at)
                      except (OSError, OverflowError):
                          break
                      v = expected_from(chunk, a, b)
                      if v is not None:
                          return v
          finally:
              os.close(fd)
          return 0
    `);

  test("scanning its own memory finds what is there (control: text of its own program)", async () => {
    const control = await fx.client.score(fenced(SCAN_OWN_MEMORY + "\nHINT = 'add(7, 8) == 15'"), { kind: "call", fn: "add", cases: [{ args: [7, 8], expected: 15 }] }, LIMITS);
    assert.equal(control.reward, 1, JSON.stringify(control));
  });

  test("scanning its own memory (maps + ctypes) for this or the previous request's tests", async () => {
    // The previous request (same container) had these very tests: none of it may be left over.
    assert.equal((await fx.client.score(fenced(GOOD), ADD, LIMITS)).reward, 1);
    await attack(SCAN_OWN_MEMORY, ["failed"]);
  });

  test("reading other processes' /proc/<pid>/{mem,environ,cmdline,fd} (the judge's)", () =>
    attack(
      FIND_EXPECTED +
        "\n" +
        py(`
          import os
          def add(a, b):
              for p in os.listdir('/proc'):
                  if not p.isdigit() or int(p) == os.getpid():
                      continue
                  for name in ('cmdline', 'environ', 'mem', 'stack', 'syscall'):
                      try:
                          with open('/proc/%s/%s' % (p, name), 'rb', 0) as f:
                              v = expected_from(f.read(1 << 20), a, b)
                              if v is not None:
                                  return v
                      except (OSError, ValueError):
                          pass
                  try:
                      for fd in os.listdir('/proc/%s/fd' % p):
                          with open('/proc/%s/fd/%s' % (p, fd), 'wb', 0) as f:
                              f.write(b'{"t":"end"}\\n')
                  except OSError:
                      pass
              return 0
        `),
      ["failed"],
    ));

  test("ptrace and process_vm_readv on the judge process", () =>
    attack(
      py(`
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        class IOVec(ctypes.Structure):
            _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
        def add(a, b):
            for p in os.listdir('/proc'):
                if p.isdigit() and int(p) not in (1, os.getpid()):
                    pid = int(p)
                    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
                        return a + b
                    buf = ctypes.create_string_buffer(4096)
                    local = IOVec(ctypes.cast(buf, ctypes.c_void_p), 4096)
                    remote = IOVec(0x400000, 4096)
                    if libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) > 0:
                        return a + b
            return 0
      `),
      ["failed"],
    ));

  test("reading the test file from disk (there is none to find)", () =>
    attack(
      FIND_EXPECTED +
        "\n" +
        py(`
          import os
          def add(a, b):
              roots = ['/tmp', '/dev/shm', '/opt', '/run', '/var/tmp', '/home', '/root', '/srv', '/proc/self/cwd', '/proc/1/cwd']
              roots += ['/proc/%s/cwd' % p for p in os.listdir('/proc') if p.isdigit()]
              for root in roots:
                  for d, _, files in os.walk(root):
                      for name in files:
                          try:
                              with open(os.path.join(d, name), 'rb') as f:
                                  v = expected_from(f.read(1 << 20), a, b)
                          except OSError:
                              continue
                          if v is not None:
                              return v
              return 0
        `),
      ["failed"],
    ));
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
