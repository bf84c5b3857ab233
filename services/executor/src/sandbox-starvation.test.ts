// A loaded host is not the candidate's fault: the harness's time limits are wall-clock, and time
// its processes spent waiting for a CPU (run-queue delay, /proc/PID/schedstat) is credited back,
// so a correct candidate starved by six CPU hogs on its CPU still passes, while a candidate that
// sleeps (waits on no run queue) gets no credit and times out, a candidate that contends with
// itself (threads, children) gets no credit, and an endless loop on an idle CPU still times out
// on time. The sandbox's judge process is reused across these runs (its counters are per run). Real bwrap sandbox, pinned with taskset to one CPU together with the
// hogs. Needs bubblewrap and taskset (fails loudly without them).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BwrapSandbox, DEFAULT_BWRAP, removeStagedRoot, stageBwrapRoot } from "./bwrap-sandbox.js";
import type { SandboxRequest } from "./sandbox-protocol.js";

const TASKSET = "/usr/bin/taskset";
const HOGS = 6;
const LIMITS = { test_timeout_ms: 1000, total_timeout_ms: 2000, memory_mb: 256, file_size_mb: 16, max_open_files: 64, output_limit_bytes: 1 << 20 };
const call = (id: string, code: string): SandboxRequest => ({ id, code, tests: { kind: "call", fn: "f", cases: [{ args: [], expected: true }] }, limits: LIMITS });

let dir: string;
let staged: string;
let sandbox: BwrapSandbox;
const hogs: ChildProcess[] = [];

before(async () => {
  for (const bin of [DEFAULT_BWRAP, TASKSET]) if (!existsSync(bin)) throw new Error(`this test needs ${bin} (apt-get install bubblewrap util-linux)`);
  dir = mkdtempSync(join(tmpdir(), "rlmesh-starve-"));
  chmodSync(dir, 0o755); // bwrap starts as an unprivileged host uid when the executor is root
  // The sandbox runs on CPU 0 only: bwrap (and so the fork server and every candidate) is started
  // through taskset.
  const pinned = join(dir, "bwrap-on-cpu0");
  writeFileSync(pinned, `#!/bin/sh\nexec ${TASKSET} -c 0 ${DEFAULT_BWRAP} "$@"\n`);
  chmodSync(pinned, 0o755);
  staged = stageBwrapRoot();
  sandbox = await BwrapSandbox.start({ stagedRoot: staged, bwrap: pinned });
});

after(async () => {
  for (const h of hogs) h.kill("SIGKILL");
  await sandbox?.destroy();
  if (staged) removeStagedRoot(staged);
  rmSync(dir, { recursive: true, force: true });
});

/** Python that burns about `cpuSeconds` of CPU time, then returns True. */
const burn = (cpuSeconds: number) => `import time\ndef f():\n    end = time.process_time() + ${cpuSeconds}\n    while time.process_time() < end:\n        pass\n    return True`;

test("an endless loop on an idle CPU still times out on time (no credit without waiting)", async () => {
  const t0 = Date.now();
  const r = await sandbox.run(call("idle-loop", "def f():\n    while True:\n        pass"), 20_000);
  assert.equal(r.status, "timeout", JSON.stringify(r));
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
});

test("a correct candidate starved by CPU hogs passes; a sleeping one still times out", async () => {
  // Each hog in its own session: with autogroup scheduling a session shares a CPU as one group,
  // and the sandbox (bwrap --new-session) is one too, so six hogs in one session would take half.
  for (let i = 0; i < HOGS; i++) hogs.push(spawn(TASKSET, ["-c", "0", "/usr/bin/python3", "-c", "while True: pass"], { stdio: "ignore", detached: true }));
  await new Promise((r) => setTimeout(r, 300));
  // 0.4 s of CPU with 1/7 of CPU 0 takes ~2.8 s of wall time: past the 1 s test limit unless the
  // run-queue wait is credited.
  const t0 = Date.now();
  const starved = await sandbox.run(call("starved", burn(0.4)), 30_000);
  const wall = Date.now() - t0;
  assert.equal(starved.status, "passed", JSON.stringify(starved));
  assert.ok(wall > LIMITS.test_timeout_ms, `the hogs really slowed it down (${wall} ms)`);
  const sleeper = await sandbox.run(call("sleeper", "import time\ndef f():\n    time.sleep(5)\n    return True"), 30_000);
  assert.equal(sleeper.status, "timeout", JSON.stringify(sleeper));
  // A candidate that makes its own contention (a busy thread beside an endless loop) earns no
  // credit: it times out like any endless loop, never a sandbox_error that would leave it unscored.
  const t1 = Date.now();
  const selfContending = await sandbox.run(
    call("self-contending", "import threading\ndef spin():\n    while True:\n        pass\ndef f():\n    threading.Thread(target=spin, daemon=True).start()\n    while True:\n        pass"),
    30_000,
  );
  assert.equal(selfContending.status, "timeout", JSON.stringify(selfContending));
  assert.ok(Date.now() - t1 < 3 * LIMITS.total_timeout_ms, `no credit stretched it (${Date.now() - t1} ms)`);
});
