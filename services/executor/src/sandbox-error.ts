/**
 * Thrown when the sandbox infrastructure (Docker, the container, the fork server) fails, as
 * opposed to the candidate failing. The worker lets BullMQ retry the job on it.
 */
export class SandboxError extends Error {
  override name = "SandboxError";
}

/**
 * A job the executor held (prefetched) but never started is given back: the pool stopped taking
 * waiters because the executor is shutting down. Not a failure of the job or of a sandbox: the
 * reward worker moves the job back to the queue's wait list (no attempt counted).
 */
export class NotStartedError extends Error {
  override name = "NotStartedError";
}

/** Thrown when a reward job's payload is unusable (e.g. malformed tests); retrying cannot help. */
export class InvalidJobError extends Error {
  override name = "InvalidJobError";
}
