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
