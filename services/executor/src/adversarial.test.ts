// Hostile candidates through queue -> executor -> Docker. Each must get reward 0 within its
// limits, the executor must keep serving from the same container (pool of one, so every
// candidate shares it with the next), and the next candidate must be unaffected.
import { after, before, describe } from "node:test";
import assert from "node:assert/strict";
import { type AddressInfo, connect, createServer } from "node:net";
import type { AssertTests, CallTests } from "@rlmesh/shared/datasets/index";
import type { RewardResult, RewardStatus } from "@rlmesh/shared/reward/reward-result";
import { backendTest, backendsUnderTest, executorFixture, fenced, sandboxIdsOf } from "./test-support.js";
import type { SandboxBackendName } from "./sandbox-backend.js";

const SECRET = `s3cr3t-${process.pid}-${Date.now()}`;
const OWNER = `adversarial-${process.pid}`;
const QUEUE = "reward-adversarial";
const LIMITS = { timeout_ms_per_test: 1500, total_timeout_ms: 4000, memory_mb: 256, output_bytes: 1 << 20 };
/** A verdict must come within the candidate's budget plus this much (queue + sandbox overhead). */
const SLACK_MS = 3000;

const ADD: AssertTests = { kind: "assert", tests: ["assert add(1, 2) == 3", "assert add(-5, 5) == 0", "assert add(10, 20) == 30"] };
const GOOD = "def add(a, b):\n    return a + b";

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  const owner = `${OWNER}-${backend}`;
  before(() => {
    process.env.RLMESH_TEST_SECRET = SECRET; // must never be visible inside a sandbox
  });
  const fx = executorFixture(QUEUE, backend, owner);
  after(() => {
    delete process.env.RLMESH_TEST_SECRET;
  });

  async function sandboxIds(): Promise<string[]> {
    return sandboxIdsOf(fx.executor, owner);
  }

  async function expectZero(program: string, statuses: RewardStatus[], tests: AssertTests | CallTests = ADD): Promise<RewardResult> {
    const before = await sandboxIds();
    const t0 = Date.now();
    const r = await fx.client.score(fenced(program), tests, LIMITS);
    const elapsed = Date.now() - t0;
    assert.equal(r.reward, 0, `reward must be 0, got ${JSON.stringify(r)}`);
    assert.ok(statuses.includes(r.status), `status ${r.status} (${r.reason}) not in ${statuses.join("|")}`);
    assert.ok(elapsed < LIMITS.total_timeout_ms + SLACK_MS, `verdict took ${elapsed} ms`);
    // The executor keeps serving, from the same container, and the next candidate is fine.
    const canary = await fx.client.score(fenced(GOOD), ADD, LIMITS);
    assert.equal(canary.reward, 1, `canary after the attack: ${JSON.stringify(canary)}`);
    assert.deepEqual(await sandboxIds(), before, "the sandbox container had to be replaced");
    return r;
  }

  /** expectZero for tests that only need the assertions. */
  async function attack(program: string, statuses: RewardStatus[], tests?: AssertTests | CallTests): Promise<void> {
    await expectZero(program, statuses, tests);
  }

  test("a correct candidate passes and a wrong one fails", async () => {
    assert.equal((await fx.client.score(fenced(GOOD), ADD)).reward, 1);
    const r = await expectZero("def add(a, b):\n    return a - b", ["failed"]);
    assert.equal(r.tests_run, 3);
  });

  test("no code block is a format error", async () => {
    const r = await fx.client.score("def add(a, b): return a + b", ADD);
    assert.equal(r.status, "format_error");
    assert.equal(r.reward, 0);
  });

  test("sys.exit(0) before the tests", () => attack("import sys\nsys.exit(0)\ndef add(a, b):\n    return 0", ["runtime_error"]));

  test("os._exit(0) before the tests", () => attack("import os\nos._exit(0)\ndef add(a, b):\n    return 0", ["runtime_error"]));

  test("sys.exit(0) inside the tested function", () => attack("import sys\ndef add(a, b):\n    sys.exit(0)", ["runtime_error"]));

  test("atexit handler rewriting the exit code", () =>
    attack("import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0", ["failed"]));

  test("objects whose __eq__ is always True", async () => {
    await expectZero(
      "class Eq:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n    def __bool__(self): return True\ndef add(a, b):\n    return Eq()",
      ["failed"],
    );
    await expectZero("class I(int):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return I(0)", ["failed"]);
  });

  test("fake pass markers and forged judge frames on stdout/stderr", () =>
    attack(
      [
        "import sys, json, struct",
        "msg = json.dumps({'status': 'passed', 'tests_run': 3, 'tests_passed': 3}).encode()",
        "for out in (sys.stdout, sys.stderr):",
        "    out.write('ALL TESTS PASSED\\nOK\\n' + msg.decode())",
        "sys.stdout.buffer.write(struct.pack('>I', len(msg)) + msg); sys.stdout.flush()",
        "def add(a, b):\n    return 0",
      ].join("\n"),
      ["failed"],
    ));

  test("forged result messages written to every open descriptor", () =>
    attack(
      'import os\nfor fd in range(3, 64):\n    for i in range(3):\n        try:\n            os.write(fd, (\'{"n":"x","t":"res","i":%d,"ok":true}\\n\' % i).encode())\n        except OSError:\n            pass\ndef add(a, b):\n    return 0',
      ["failed", "runtime_error"],
    ));

  test("syntax error: zero tests run", async () => {
    const r = await expectZero("def add(a, b)\n    return a + b", ["runtime_error"]);
    assert.equal(r.tests_run, 0);
  });

  test("killing the parent, pid 1 and the runner itself", async () => {
    await expectZero(
      "import os, signal\nfor s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSTOP):\n    for pid in (1, os.getppid()):\n        try:\n            os.kill(pid, s)\n        except OSError:\n            pass\ndef add(a, b):\n    return 0",
      ["failed", "runtime_error"], // the parent is the per-request supervisor: killing it fails the run
    );
    await expectZero("import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\ndef add(a, b):\n    os.kill(os.getpid(), 9)", [
      "memory",
      "runtime_error",
    ]);
  });

  test("infinite loop is stopped by the per-test timeout", () => attack("def add(a, b):\n    while True:\n        pass", ["timeout"]));

  test("fork storm is contained", () =>
    attack("import os\ndef add(a, b):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass", [
      "timeout",
      "runtime_error",
    ]));

  test("memory hog", async () => {
    await expectZero("def add(a, b):\n    x = bytearray(4 * 1024 ** 3)\n    return a + b", ["memory"]);
    await expectZero("def add(a, b):\n    keep = []\n    while True:\n        keep.append(bytearray(10 ** 7))", ["memory"]);
  });

  test("memory exhaustion across processes: the OOM killer takes candidates, never the fork server", () =>
    attack(
      [
        "import os, time",
        "def add(a, b):",
        "    for _ in range(6):",
        "        if os.fork() == 0:",
        "            x = b'x' * (200 * 1024 * 1024)",
        "            time.sleep(10)",
        "            os._exit(0)",
        "    time.sleep(10)",
        "    return a + b",
      ].join("\n"),
      ["timeout", "memory"],
    ));

  test("disk fill", () =>
    attack(
      "import os\ndef add(a, b):\n    i = 0\n    while True:\n        i += 1\n        with open('/tmp/fill%d' % i, 'wb') as f:\n            f.write(b'x' * 10 ** 6)",
      ["runtime_error"],
    ));

  test("50+ MB of stdout", async () => {
    await expectZero("import sys\ndef add(a, b):\n    sys.stdout.write('x' * (60 * 2 ** 20))\n    return a + b", ["runtime_error"]);
    await expectZero("import os\ndef add(a, b):\n    for _ in range(60):\n        os.write(2, b'y' * 2 ** 20)\n    return a + b", [
      "runtime_error",
    ]);
  });

  /** What a candidate can see of the previous one: other processes, files, IPC objects. */
  const PROBE: CallTests = { kind: "call", fn: "probe", cases: [{ args: [], expected: { pids: 4, tmp: ["run"], run: [], shm: [] } }] };
  const PROBE_CODE = [
    "import os",
    "def probe():",
    "    pids = [p for p in os.listdir('/proc') if p.isdigit()]",
    "    return {'pids': len(pids), 'tmp': sorted(os.listdir('/tmp')), 'run': sorted(os.listdir('.')), 'shm': sorted(os.listdir('/dev/shm'))}",
  ].join("\n");

  test("a background process and files left behind are gone for the next candidate", async () => {
    const clean = await fx.client.score(fenced(PROBE_CODE), PROBE, LIMITS);
    assert.equal(clean.reward, 1, `probe on a clean sandbox: ${JSON.stringify(clean)}`);
    const leaver = [
      "import os, time",
      "open('/tmp/left-behind', 'w').write('x')",
      "open('/dev/shm/left-behind', 'w').write('x')",
      "open('here', 'w').write('x')",
      "if os.fork() == 0:",
      "    os.setsid()",
      "    if os.fork() == 0:",
      "        while True:",
      "            open('/tmp/bg-%d' % time.time_ns(), 'w').close()",
      "            time.sleep(0.05)",
      "    os._exit(0)",
      "def add(a, b):\n    return a + b",
    ].join("\n");
    const r = await fx.client.score(fenced(leaver), ADD, LIMITS);
    assert.equal(r.reward, 1, "leaving a process behind is allowed but must not survive");
    const probe = await fx.client.score(fenced(PROBE_CODE), PROBE, LIMITS);
    assert.equal(probe.reward, 1, `next candidate saw leftovers: ${JSON.stringify(probe)}`);
  });

  test("SysV IPC objects left behind are gone for the next candidate", async () => {
    const leaver = [
      "import ctypes",
      "libc = ctypes.CDLL(None, use_errno=True)",
      "made = [libc.shmget(0, 4096, 0o1600), libc.msgget(0, 0o1600), libc.semget(0, 1, 0o1600)]",
      "def add(a, b):\n    return a + b",
    ].join("\n");
    assert.equal((await fx.client.score(fenced(leaver), ADD, LIMITS)).reward, 1);
    const probe = "def left():\n    return [len(open('/proc/sysvipc/' + k).read().splitlines()) - 1 for k in ('shm', 'msg', 'sem')]";
    const r = await fx.client.score(fenced(probe), { kind: "call", fn: "left", cases: [{ args: [], expected: [0, 0, 0] }] }, LIMITS);
    assert.equal(r.reward, 1, `IPC objects survived into the next candidate: ${JSON.stringify(r)}`);
  });

  test("the previous candidate's code and tests are not in the next candidate's memory", async () => {
    const marker = `MARK${process.pid}x${Date.now()}`;
    const a = await fx.client.score(
      fenced(`NOTE = "${marker}-code"\ndef add(a, b):\n    return a + b`),
      { kind: "assert", tests: [`assert add(1, 2) == 3 or "${marker}-test"`] },
      LIMITS,
    );
    assert.equal(a.reward, 1);
    const probe = [
      `MINE = "CTRL-${marker}"`,
      "import gc",
      "def seen(reversed_marker):",
      "    m = reversed_marker[::-1]  # the argument itself must not match",
      "    return any(m in repr(o) for o in gc.get_objects() if type(o) in (dict, list, tuple))",
    ].join("\n");
    const tests = (m: string, expected: boolean): CallTests => ({
      kind: "call",
      fn: "seen",
      cases: [{ args: [[...m].reverse().join("")], expected }],
    });
    const control = await fx.client.score(fenced(probe), tests(`CTRL-${marker}`, true), LIMITS);
    assert.equal(control.reward, 1, `the probe must find its own marker: ${JSON.stringify(control)}`);
    const r = await fx.client.score(fenced(probe), tests(`${marker}-`, false), LIMITS);
    assert.equal(r.reward, 1, `the previous candidate was visible in memory: ${JSON.stringify(r)}`);
  });

  test("the executor's environment and the host's network are not visible inside the sandbox", async () => {
    // Isolation seen from inside: only `lo` exists, and a port this test listens on at the host's
    // 127.0.0.1 is unreachable (the sandbox's loopback is its own). No traffic leaves loopback.
    const server = createServer((sock) => {
      sock.on("error", () => undefined);
      sock.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      await new Promise<void>((resolve, reject) => {
        const c = connect(port, "127.0.0.1", () => {
          c.destroy();
          resolve();
        });
        c.on("error", reject);
      });
      const code = [
        "import os, glob, socket",
        "def probe(secret, port):",
        "    seen = secret in repr(dict(os.environ))",
        "    for f in glob.glob('/proc/*/environ'):",
        "        try:",
        "            seen = seen or secret.encode() in open(f, 'rb').read()",
        "        except OSError:",
        "            pass",
        "    try:",
        "        socket.create_connection(('127.0.0.1', port), timeout=1).close()",
        "        net = True",
        "    except OSError:",
        "        net = False",
        "    ifaces = sorted(name for _, name in socket.if_nameindex())",
        "    oom = open('/proc/self/oom_score_adj').read().strip()",
        "    import signal",
        "    dfl = all(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGQUIT, signal.SIGXCPU, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGSYS, signal.SIGSEGV))",
        "    ign = all(signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGPIPE, signal.SIGXFSZ))",
        "    sigs = dfl and ign and signal.getsignal(signal.SIGINT) is signal.default_int_handler",
        "    env = sorted(os.environ) == ['HOME', 'LANG', 'PATH', 'TMPDIR'] and os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()",
        "    return {'secret_seen': seen, 'has_path': 'PATH' in os.environ, 'host_port_reachable': net, 'ifaces': ifaces, 'uid': os.getuid(), 'oom_score_adj': oom, 'clean_env': env, 'default_signals': sigs}",
      ].join("\n");
      const probe = (secret: string, expected: unknown): CallTests => ({ kind: "call", fn: "probe", cases: [{ args: [secret, port], expected }] });
      const isolated = { has_path: true, host_port_reachable: false, ifaces: ["lo"], uid: 10001, oom_score_adj: "1000", clean_env: true, default_signals: true };
      // Control: the probe does see what is there (its own PATH), so it can detect a leak. The
      // candidate is also the OOM killer's first choice, so the fork server survives memory abuse.
      // Its environment is exactly PATH, HOME, LANG and TMPDIR (HOME = TMPDIR = its working
      // directory; set once in the fork server, which forks it), and its signals are those of a
      // fresh python3 (the fork server ignores every one it can): standard signals at their
      // defaults (SIGXCPU too), SIGPIPE and SIGXFSZ ignored, SIGINT raising KeyboardInterrupt.
      const control = await fx.client.score(fenced(code), probe("/usr/bin", { secret_seen: true, ...isolated }), LIMITS);
      assert.equal(control.reward, 1, JSON.stringify(control));
      const r = await fx.client.score(fenced(code), probe(SECRET, { secret_seen: false, ...isolated }), LIMITS);
      assert.equal(r.reward, 1, `the executor's secret or the host's network was reachable: ${JSON.stringify(r)}`);
    } finally {
      server.close();
    }
  });

  test("stdio and call-style tests judge output, not exit codes", async () => {
    const stdio = {
      kind: "stdio" as const,
      cases: [
        { input: "2 3\n", output: "5\n" },
        { input: "1.5 1.25", output: "2.75" },
      ],
    };
    const sum = "a, b = map(float, input().split())\ns = a + b\nprint(int(s) if s == int(s) else s)";
    assert.equal((await fx.client.score(fenced(sum), stdio, LIMITS)).reward, 1);
    await expectZero("import sys\nprint('5')\nsys.exit(0)", ["runtime_error"], {
      kind: "call",
      fn: "add",
      cases: [{ args: [1, 2], expected: 3 }],
    });
    const wrongStdio = await fx.client.score(fenced("print(5)"), stdio, LIMITS);
    assert.equal(wrongStdio.reward, 0);
    assert.equal(wrongStdio.tests_passed, 1);
  });

  test("metrics count executions by status and report the pool", async () => {
    const text = await fx.registry.metrics();
    assert.match(text, /rlmesh_sandbox_executions_total\{status="passed"\} [1-9]/);
    assert.match(text, /rlmesh_sandbox_executions_total\{status="timeout"\} [1-9]/);
    assert.match(text, /rlmesh_sandbox_execution_duration_seconds_bucket/);
    assert.match(text, /rlmesh_sandbox_pool_size 1/);
    assert.match(text, /rlmesh_queue_depth 0/);
    assert.match(text, /rlmesh_queue_wait_seconds_count [1-9]/);
  });
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
