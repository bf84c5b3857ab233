// The bwrap backend on its own: the argument list (pure), a sandbox in the rlimits fallback (no
// cgroups), cgroup membership when cgroups are writable, and a sandbox that dies with its
// executor. Needs bubblewrap (fails loudly without it).
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BwrapSandbox, DEFAULT_BWRAP, bwrapArgs, removeStagedRoot, stageBwrapRoot } from "./bwrap-sandbox.js";
import { SandboxCgroups, ownCgroups } from "./sandbox-cgroup.js";
import { DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";
import type { SandboxRequest } from "./sandbox-protocol.js";

const LIMITS = { test_timeout_ms: 2000, total_timeout_ms: 4000, memory_mb: 256, file_size_mb: 16, max_open_files: 64, output_limit_bytes: 1 << 20 };
const call = (id: string, code: string, fn: string, expected: unknown, args: unknown[] = []): SandboxRequest => ({
  id,
  code,
  tests: { kind: "call", fn, cases: [{ args, expected }] },
  limits: LIMITS,
});

before(() => {
  if (!existsSync(DEFAULT_BWRAP)) throw new Error(`these tests need bubblewrap: ${DEFAULT_BWRAP} is missing (apt-get install bubblewrap)`);
});

test("bwrapArgs: every namespace, no nested userns, PID 1, uid 10001, read-only root, private tmpfs", () => {
  const a = bwrapArgs({
    stagedRoot: "/s",
    limits: DEFAULT_CONTAINER_LIMITS,
    rootEntry: (p) => (p === "/lib" ? { link: "usr/lib" } : p === "/sbin" ? "dir" : undefined),
  });
  const s = a.join(" ");
  for (const flag of ["--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv"])
    assert.ok(a.includes(flag), flag);
  assert.ok(!a.includes("--share-net"));
  assert.match(s, /--uid 10001 --gid 10001/);
  assert.match(s, /--ro-bind \/usr \/usr/);
  assert.match(s, /--symlink usr\/lib \/lib/);
  assert.match(s, /--ro-bind \/sbin \/sbin/);
  assert.match(s, /--ro-bind \/s\/harness \/opt\/rlmesh\/harness/);
  assert.match(s, /--perms 0700 --size 67108864 --tmpfs \/tmp/);
  assert.match(s, /--tmpfs \/dev\/shm/);
  assert.match(s, /--remount-ro \/dev --remount-ro \//);
  // Nothing writable is bound from the host; no --bind / --dev-bind at all.
  assert.ok(!a.includes("--bind") && !a.includes("--dev-bind"));
  assert.deepEqual(a.slice(a.indexOf("--")), ["--", "/usr/bin/python3", "-I", "/opt/rlmesh/harness/fork_server.py"]);
  const fallback = bwrapArgs({ stagedRoot: "/s", limits: DEFAULT_CONTAINER_LIMITS, nproc: 64, rootEntry: () => undefined });
  assert.deepEqual(fallback.slice(-2), ["--nproc", "64"]);
});

test("ownCgroups parses v1, v2 and hybrid /proc/self/cgroup", () => {
  const hybrid = ownCgroups("4:memory:/a/b\n8:pids:/\n1:cpu,cpuacct:/c\n0::/u\n");
  assert.equal(hybrid.v2, "/u");
  assert.equal(hybrid.v1.get("memory"), "/a/b");
  assert.equal(hybrid.v1.get("cpuacct"), "/c");
  assert.equal(ownCgroups("0::/x.slice\n").v2, "/x.slice");
});

test("rlimits fallback: no cgroup, RLIMIT_NPROC bounds the sandbox, a fork bomb is contained", async () => {
  const staged = stageBwrapRoot();
  const cgroups = await SandboxCgroups.open(DEFAULT_CONTAINER_LIMITS, { root: mkdtempSync(join(tmpdir(), "no-cgroup-")) });
  assert.equal(cgroups.mode, "rlimits");
  assert.match(cgroups.reason, /no writable cgroup/);
  const s = await BwrapSandbox.start({ stagedRoot: staged, cgroups });
  try {
    const nproc = "import resource\ndef f():\n    return resource.getrlimit(resource.RLIMIT_NPROC)[0]";
    assert.equal((await s.run(call("1", nproc, "f", DEFAULT_CONTAINER_LIMITS.pids), 10_000)).status, "passed");
    const bomb = "import os\ndef f():\n    n = 0\n    while True:\n        try:\n            if os.fork() == 0:\n                import time; time.sleep(30)\n            n += 1\n        except OSError:\n            return n < 64";
    assert.equal((await s.run(call("2", bomb, "f", true), 10_000)).status, "passed");
    // Everything the bomb forked is gone for the next request.
    const pids = "import os\ndef f():\n    return len([p for p in os.listdir('/proc') if p.isdigit()])";
    assert.equal((await s.run(call("3", pids, "f", 4), 10_000)).status, "passed");
  } finally {
    await s.destroy();
    await cgroups.close();
    removeStagedRoot(staged);
  }
});

test("with writable cgroups the fork server and its children are in the sandbox's own cgroup", async (t) => {
  const staged = stageBwrapRoot();
  const cgroups = await SandboxCgroups.open(DEFAULT_CONTAINER_LIMITS);
  if (cgroups.mode === "rlimits") {
    // Not an error on a host without writable cgroups: the fallback is tested above.
    t.diagnostic(`cgroups not writable here: ${cgroups.reason}`);
    removeStagedRoot(staged);
    return;
  }
  const s = await BwrapSandbox.start({ stagedRoot: staged, cgroups });
  try {
    const host = readFileSync(`/proc/${s.pid1}/cgroup`, "utf8");
    assert.match(host, /rlmesh-bwrap-\d+-[a-z0-9]+\/sb-1/);
    const probe = "def f():\n    return 'sb-1' in open('/proc/self/cgroup').read() or open('/proc/self/cgroup').read().count(':/\\n') > 0";
    assert.equal((await s.run(call("1", probe, "f", true), 10_000)).status, "passed");
  } finally {
    await s.destroy();
    await cgroups.close();
    removeStagedRoot(staged);
  }
});

test("a bwrap sandbox dies with the process that started it (--die-with-parent)", async () => {
  const staged = stageBwrapRoot();
  const script = `
    import { BwrapSandbox } from ${JSON.stringify(new URL("./bwrap-sandbox.js", import.meta.url).href)};
    const s = await BwrapSandbox.start({ stagedRoot: ${JSON.stringify(staged)} });
    process.stdout.write(String(s.pid1) + "\\n");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const pid1 = await new Promise<number>((resolve, reject) => {
      child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once("exit", () => reject(new Error("helper exited early")));
    });
    assert.ok(pid1 > 0 && existsSync(`/proc/${pid1}`));
    child.kill("SIGKILL");
    for (let i = 0; i < 100 && existsSync(`/proc/${pid1}`); i++) await new Promise((r) => setTimeout(r, 50));
    // A zombie is gone for our purposes (nothing runs); the fork server must not keep running.
    const state = existsSync(`/proc/${pid1}/stat`) ? readFileSync(`/proc/${pid1}/stat`, "utf8").split(" ")[2] : "gone";
    assert.ok(state === "gone" || state === "Z", `fork server still ${state} after its executor died`);
  } finally {
    child.kill("SIGKILL");
    removeStagedRoot(staged);
  }
});
