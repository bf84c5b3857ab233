import { randomUUID } from "node:crypto";
import { type TestSpec, testCount } from "@rlmesh/shared/datasets/index";
import { entryPoints, selectProgram } from "./code-block.js";
import { REWARD_STATUSES, type RewardResult, type RewardStatus, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { InvalidJobError, SandboxError } from "./sandbox-error.js";
import {
  CANDIDATE_MAX_OPEN_FILES,
  CONTAINER_MEMORY_HEADROOM_MB,
  type ContainerLimits,
  type SandboxLimits,
  resolveLimits,
} from "./sandbox-limits.js";
import type { SandboxRequest, SandboxResponse } from "./sandbox-protocol.js";
import { DEFAULT_WATCHDOG_GRACE_MS } from "./docker-sandbox.js";

/** Something that runs one sandbox request (a SandboxPool). */
export interface SandboxRunner {
  /** `onStart`, when the runner supports it (SandboxPool), is called (and awaited) once a sandbox is taken for the request. */
  run(req: SandboxRequest, watchdogMs: number, onStart?: () => unknown): Promise<SandboxResponse>;
}

export interface ScoreInput {
  response: string;
  tests: TestSpec;
  limits?: Partial<SandboxLimits>;
}

/** Throws InvalidJobError when a test spec is unusable (checked before anything runs). */
export function validateTests(tests: TestSpec): void {
  if (typeof tests !== "object" || tests === null) throw new InvalidJobError("job has no tests object");
  if (tests.kind === "assert") {
    if (!Array.isArray(tests.tests) || !tests.tests.every((t) => typeof t === "string"))
      throw new InvalidJobError("assert tests need a list of strings");
  } else if (tests.kind === "call") {
    if (typeof tests.fn !== "string" || !Array.isArray(tests.cases) || !tests.cases.every((c) => Array.isArray(c?.args)))
      throw new InvalidJobError("call tests need fn and cases with args lists");
  } else if (tests.kind === "stdio") {
    if (!Array.isArray(tests.cases) || !tests.cases.every((c) => typeof c?.input === "string" && typeof c?.output === "string"))
      throw new InvalidJobError("stdio tests need cases with input and output strings");
  } else {
    throw new InvalidJobError(`unknown test kind ${JSON.stringify((tests as { kind?: unknown }).kind)}`);
  }
  if (testCount(tests) === 0) throw new InvalidJobError("job has no tests");
}

/**
 * Scores one candidate: the last fenced block that defines the task's entry point is the program
 * (no closed block: format_error), the sandbox runs the tests, the judge's verdict becomes the
 * result. Infrastructure failures throw SandboxError so the queue can retry; every candidate
 * failure is a result.
 */
export async function scoreCandidate(
  runner: SandboxRunner,
  input: ScoreInput,
  defaults: { limits: SandboxLimits; container: ContainerLimits },
  onStart?: () => unknown,
): Promise<RewardResult> {
  if (typeof input.response !== "string") throw new InvalidJobError("response must be a string");
  validateTests(input.tests);
  const total = testCount(input.tests);
  const started = Date.now();
  const code = selectProgram(input.response, entryPoints(input.tests));
  if (code === null) {
    return rewardResult({
      status: "format_error",
      tests_run: 0,
      tests_passed: 0,
      tests_total: total,
      duration_ms: Date.now() - started,
      reason: "no fenced code block in the response",
    });
  }
  const limits = resolveLimits(input.limits, defaults.limits);
  const req: SandboxRequest = {
    id: randomUUID(),
    code,
    tests: input.tests,
    limits: {
      test_timeout_ms: limits.timeout_ms_per_test,
      total_timeout_ms: limits.total_timeout_ms,
      memory_mb: Math.min(limits.memory_mb, defaults.container.memory_mb - CONTAINER_MEMORY_HEADROOM_MB),
      file_size_mb: defaults.container.file_size_mb,
      max_open_files: Math.min(CANDIDATE_MAX_OPEN_FILES, defaults.container.open_files),
      output_limit_bytes: limits.output_bytes,
    },
  };
  const res = await runner.run(req, limits.total_timeout_ms + DEFAULT_WATCHDOG_GRACE_MS, onStart);
  if (!(REWARD_STATUSES as readonly string[]).includes(res.status) || res.status === "sandbox_error") {
    throw new SandboxError(`sandbox rejected the request: ${res.status} ${res.detail ?? ""}`);
  }
  return rewardResult({
    status: res.status as RewardStatus,
    tests_run: res.tests_run,
    tests_passed: res.tests_passed,
    tests_total: total,
    duration_ms: Date.now() - started,
    stderr_tail: res.stderr_tail,
    reason: res.detail || defaultReason(res.status as RewardStatus),
  });
}

function defaultReason(status: RewardStatus): string {
  switch (status) {
    case "passed":
      return "all tests passed";
    case "timeout":
      return "time limit exceeded";
    case "memory":
      return "memory limit exceeded";
    default:
      return status;
  }
}
