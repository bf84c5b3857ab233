/** Final statuses of one candidate; only `passed` earns reward 1. */
export const REWARD_STATUSES = ["passed", "failed", "format_error", "timeout", "memory", "runtime_error", "sandbox_error"] as const;
export type RewardStatus = (typeof REWARD_STATUSES)[number];

/** What the executor records for one candidate (the BullMQ job's return value). */
export interface RewardResult {
  /** 1 only with positive evidence that every test ran and passed. */
  reward: 0 | 1;
  status: RewardStatus;
  tests_run: number;
  tests_passed: number;
  /** Tests the problem has. */
  tests_total: number;
  duration_ms: number;
  /** Capped tail of the program's stderr. */
  stderr_tail: string;
  /** Why this status, in words. */
  reason: string;
}

/** Longest stderr tail kept in a result. */
export const STDERR_TAIL_CHARS = 2000;

/** Builds a result; the reward follows from the status alone, never from anything else. */
export function rewardResult(fields: Omit<RewardResult, "reward" | "stderr_tail"> & { stderr_tail?: string }): RewardResult {
  const tail = fields.stderr_tail ?? "";
  return {
    ...fields,
    reward: fields.status === "passed" && fields.tests_total > 0 && fields.tests_passed === fields.tests_total ? 1 : 0,
    stderr_tail: tail.length > STDERR_TAIL_CHARS ? tail.slice(-STDERR_TAIL_CHARS) : tail,
  };
}

/**
 * Why a reward job ended without a reward: the infrastructure failed, not the candidate. Such a
 * sample has no reward at all (it is dropped from its group), never reward 0.
 * - `sandbox_error`: the sandbox (Docker, the container, the fork server) failed on every attempt;
 * - `executor_lost`: the executor running it died (its lock expired) more often than BullMQ allows;
 * - `infra_timeout`: no final result within the producer's wait (no executor took it);
 * - `invalid_job`: the job's payload is unusable (a producer bug; retrying cannot help).
 */
export const INFRA_FAILURES = ["sandbox_error", "executor_lost", "infra_timeout", "invalid_job"] as const;
export type InfraFailure = (typeof INFRA_FAILURES)[number];

/** Prefix of a failed reward job's failedReason that says which infrastructure failure it was. */
export function infraFailureReason(kind: InfraFailure, detail: string): string {
  return `${kind}: ${detail}`;
}

/** The infrastructure failure a failed reward job's failedReason names (BullMQ's stall limit: executor_lost). */
export function classifyFailedReason(reason: string): InfraFailure {
  const m = /^(sandbox_error|executor_lost|infra_timeout|invalid_job):/.exec(reason);
  if (m) return m[1] as InfraFailure;
  // BullMQ's own words when a job's lock expired more than maxStalledCount times.
  if (/stalled more than allowable limit/i.test(reason)) return "executor_lost";
  return "sandbox_error";
}
