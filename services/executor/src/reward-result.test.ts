import { test } from "node:test";
import assert from "node:assert/strict";
import { STDERR_TAIL_CHARS, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { DEFAULT_SANDBOX_LIMITS, MAX_SANDBOX_LIMITS, resolveLimits } from "./sandbox-limits.js";
import { rewardJobId, rewardJobOptions } from "@rlmesh/shared/reward/reward-jobs";
import { sandboxContainerSpec } from "./docker-sandbox.js";
import { DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";

const base = { tests_run: 3, tests_passed: 3, tests_total: 3, duration_ms: 1, reason: "" };

test("reward 1 only for passed with every test passed", () => {
  assert.equal(rewardResult({ ...base, status: "passed" }).reward, 1);
  assert.equal(rewardResult({ ...base, status: "failed" }).reward, 0);
  assert.equal(rewardResult({ ...base, status: "passed", tests_passed: 2 }).reward, 0);
  assert.equal(rewardResult({ ...base, status: "passed", tests_total: 0, tests_run: 0, tests_passed: 0 }).reward, 0);
});

test("stderr tail is capped", () => {
  const r = rewardResult({ ...base, status: "failed", stderr_tail: "x".repeat(10_000) + "END" });
  assert.equal(r.stderr_tail.length, STDERR_TAIL_CHARS);
  assert.ok(r.stderr_tail.endsWith("END"));
});

test("job limits override defaults but are clamped to the maximums", () => {
  assert.deepEqual(resolveLimits(undefined), DEFAULT_SANDBOX_LIMITS);
  const l = resolveLimits({ timeout_ms_per_test: 10 ** 9, memory_mb: 100 });
  assert.equal(l.timeout_ms_per_test, MAX_SANDBOX_LIMITS.timeout_ms_per_test);
  assert.equal(l.memory_mb, 100);
  assert.ok(l.total_timeout_ms >= l.timeout_ms_per_test);
});

test("reward job ids are idempotent and free of ':'", () => {
  assert.equal(rewardJobId("job:1", 4, 7), "job_1-4-7");
  assert.equal(rewardJobId("job:1", 4, 7), rewardJobId("job:1", 4, 7));
  const opts = rewardJobOptions({
    job_id: "j",
    step: 1,
    sample_index: 2,
    problem_id: "p",
    response: "",
    tests: { kind: "assert", tests: ["assert 1"] },
  });
  assert.equal(opts.jobId, "j-1-2");
  assert.ok((opts.attempts ?? 0) > 1, "sandbox errors are retried");
  assert.ok(opts.backoff);
});

test("sandbox containers are hardened", () => {
  const spec = sandboxContainerSpec({ image: "img", owner: "o", limits: DEFAULT_CONTAINER_LIMITS });
  const h = spec.HostConfig!;
  assert.equal(h.NetworkMode, "none");
  assert.equal(spec.NetworkDisabled, true);
  assert.equal(h.Memory, h.MemorySwap);
  assert.ok((h.NanoCpus ?? 0) > 0);
  assert.ok((h.PidsLimit ?? 0) > 0);
  assert.equal(h.ReadonlyRootfs, true);
  assert.match(h.Tmpfs!["/tmp"]!, /noexec/);
  assert.deepEqual(h.CapDrop, ["ALL"]);
  assert.ok(h.SecurityOpt?.includes("no-new-privileges"));
  assert.notEqual(spec.User, "");
  assert.ok(!spec.User!.startsWith("0"), "non-root user");
  assert.deepEqual(spec.Env, [], "never the executor's environment");
  assert.deepEqual(h.Ulimits!.map((u) => u.Name).sort(), ["core", "fsize", "nofile"]);
  assert.equal(spec.Labels!["rlmesh.sandbox"], "1");
});
