/**
 * Thrown when the sandbox infrastructure (Docker, the container, the fork server) fails, as
 * opposed to the candidate failing. The worker lets BullMQ retry the job on it.
 */
export class SandboxError extends Error {
  override name = "SandboxError";
}

/** Thrown when a reward job's payload is unusable (e.g. malformed tests); retrying cannot help. */
export class InvalidJobError extends Error {
  override name = "InvalidJobError";
}
