import { test } from "node:test";
import assert from "node:assert/strict";
import { type Sandbox, SandboxPool } from "./sandbox-pool.js";
import { NotStartedError, SandboxError } from "./sandbox-error.js";
import type { SandboxRequest, SandboxResponse } from "./sandbox-protocol.js";

/** A fake sandbox: `behaviour` decides each run's outcome. */
class FakeSandbox implements Sandbox {
  healthy = true;
  destroyed = false;
  runs = 0;
  constructor(
    readonly id: string,
    private readonly behaviour: (s: FakeSandbox) => Promise<SandboxResponse>,
  ) {}
  async run(_req: SandboxRequest): Promise<SandboxResponse> {
    this.runs++;
    return this.behaviour(this);
  }
  async destroy(): Promise<void> {
    this.destroyed = true;
    this.healthy = false;
  }
}

const ok = (id: string): SandboxResponse => ({
  id,
  status: "passed",
  tests_run: 1,
  tests_passed: 1,
  tests_total: 1,
  duration_ms: 1,
  stderr_tail: "",
  detail: "",
});
const req = (id = "r"): SandboxRequest => ({
  id,
  code: "",
  tests: { kind: "assert", tests: ["assert True"] },
  limits: { test_timeout_ms: 1, total_timeout_ms: 1, memory_mb: 1, file_size_mb: 1, max_open_files: 1, output_limit_bytes: 1 },
});

test("a sandbox that failed is destroyed and replaced; the pool keeps its size", async () => {
  const made: FakeSandbox[] = [];
  let n = 0;
  const pool = new SandboxPool({
    size: 1,
    create: async () => {
      const s = new FakeSandbox(`s${n++}`, async (self) => {
        if (self.id === "s0") {
          self.healthy = false;
          throw new SandboxError("container died");
        }
        return ok("r");
      });
      made.push(s);
      return s;
    },
  });
  await pool.start();
  await assert.rejects(pool.run(req(), 1000), SandboxError);
  assert.ok(made[0]!.destroyed);
  assert.deepEqual(await pool.run(req(), 1000), ok("r")); // waits for the replacement
  assert.equal(pool.size, 1);
  assert.equal(made[1]!.runs, 1);
  await pool.close();
  assert.ok(made[1]!.destroyed);
});

test("runs wait for a free sandbox; close rejects waiters", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const pool = new SandboxPool({ size: 1, create: async () => new FakeSandbox("s", async () => (await gate, ok("r"))) });
  await pool.start();
  const busy: string[] = [];
  const first = pool.run(req(), 1000);
  const second = pool.run(req(), 1000).then(() => busy.push("second"));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(pool.busyCount, 1);
  assert.deepEqual(busy, []);
  release();
  await first;
  await second;
  assert.deepEqual(busy, ["second"]);
  const never = new SandboxPool({ size: 1, create: async () => new FakeSandbox("t", () => new Promise<SandboxResponse>(() => undefined)) });
  await never.start();
  void never.run(req(), 1000);
  const waiting = never.run(req(), 1000);
  await never.close();
  await assert.rejects(waiting, /closed/);
});

test("start fails when no sandbox can start (Docker or image missing)", async () => {
  const pool = new SandboxPool({
    size: 2,
    create: async () => Promise.reject(new SandboxError("sandbox image rlmesh-sandbox:1 is missing")),
  });
  await assert.rejects(pool.start(), /missing/);
});

test("returnWaiters: runs waiting for a sandbox (and later ones that find none idle) are given back; the running one finishes; onStart marks a start", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const pool = new SandboxPool({ size: 1, create: async () => new FakeSandbox("a", async () => (await gate, ok("a"))) });
  await pool.start();
  const starts: string[] = [];
  const running = pool.run(req("r1"), 1000, () => starts.push("r1"));
  const held = pool.run(req("r2"), 1000, () => starts.push("r2"));
  pool.returnWaiters();
  await assert.rejects(held, NotStartedError);
  await assert.rejects(pool.run(req("r3"), 1000, () => starts.push("r3")), NotStartedError);
  release();
  assert.equal((await running).status, "passed");
  assert.deepEqual(starts, ["r1"], "only the run that got a sandbox started");
  // A sandbox idle again is still used: only runs that would wait are given back.
  assert.equal((await pool.run(req("r4"), 1000, () => starts.push("r4"))).status, "passed");
  assert.deepEqual(starts, ["r1", "r4"]);
  await pool.close();
});

test("the acquire timeout counts time without progress: a long queue that keeps moving waits, a stuck pool fails every waiter", async () => {
  // Each run takes 30 ms; 10 runs queue on one sandbox with a 100 ms timeout: the last waits
  // ~270 ms in all, far past the timeout, but a sandbox is freed every 30 ms.
  const pool = new SandboxPool({ size: 1, acquireTimeoutMs: 100, create: async () => new FakeSandbox("s", async () => (await sleep(30), ok("r"))) });
  await pool.start();
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.run(req(`r${i}`), 1000)));
  assert.equal(results.length, 10);
  assert.ok(Date.now() - t0 >= 250, "the queue took longer than the timeout");
  await pool.close();

  // A run that never ends: the waiters behind it fail together once 100 ms pass with no sandbox freed.
  const stuck = new SandboxPool({ size: 1, acquireTimeoutMs: 100, create: async () => new FakeSandbox("t", () => new Promise<SandboxResponse>(() => undefined)) });
  await stuck.start();
  void stuck.run(req(), 1000);
  const t1 = Date.now();
  const waiting = [stuck.run(req("a"), 1000), stuck.run(req("b"), 1000)];
  for (const w of waiting) await assert.rejects(w, (err: Error) => err instanceof SandboxError && /no sandbox freed within 100 ms while 2 run\(s\) waited/.test(err.message));
  const waited = Date.now() - t1;
  assert.ok(waited >= 90 && waited < 1000, `failed after ${waited} ms`);
  await stuck.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
