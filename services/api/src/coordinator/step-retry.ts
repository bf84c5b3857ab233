// The retry policy of a job's steps: a step is idempotent, so transient failures are retried
// with backoff before the job fails.
import { status } from "@grpc/grpc-js";
import { InvalidArgumentError } from "@rlmesh/shared";
import { CollapseGuardStop } from "./collapse-guard-stop.js";
import { InfraFailureRateError } from "./infra-failures.js";

/** Attempts per step before the job fails. */
export const STEP_ATTEMPTS = 6;

/**
 * Errors worth retrying a step for: anything but a bad request, a cancellation, a guard stop or
 * too many unscored candidates (a retry finds the same failed reward jobs under the same ids).
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof InvalidArgumentError || err instanceof CollapseGuardStop || err instanceof InfraFailureRateError) return false;
  if (err instanceof Error && err.name === "AbortError") return false;
  const code = (err as { code?: unknown }).code;
  return !(typeof code === "number" && PERMANENT_GRPC_CODES.has(code));
}

/** gRPC statuses that a retry will not heal. */
export const PERMANENT_GRPC_CODES: ReadonlySet<number> = new Set([
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.UNIMPLEMENTED,
]);

/** How long a step waits out a Redis outage (retrying every REDIS_RETRY_MS) before it counts as a failed attempt. */
export const REDIS_OUTAGE_LIMIT_MS = 10 * 60_000;
export const REDIS_RETRY_MS = 2000;

/** First retry delay of a failed step; doubles per attempt. */
export const STEP_RETRY_BASE_MS = 1000;
/** Longest wait between two attempts of a step. */
export const STEP_RETRY_MAX_MS = 30_000;

/** How long to wait after failed attempt `attempt` (1-based) of a step. */
export function stepRetryDelayMs(attempt: number): number {
  return Math.min(STEP_RETRY_MAX_MS, STEP_RETRY_BASE_MS * 2 ** (attempt - 1));
}
