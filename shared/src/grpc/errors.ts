import * as grpc from "@grpc/grpc-js";

/** An error with a gRPC status code; handlers throw it and the wrappers send it as the status. */
export class GrpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = "GrpcError";
  }
}

/** A bad request: INVALID_ARGUMENT with a message that starts with the offending field. */
export class InvalidArgumentError extends GrpcError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(grpc.status.INVALID_ARGUMENT, `${field}: ${message}`);
    this.name = "InvalidArgumentError";
  }
}

/**
 * A request that is well formed but cannot be served in the current state (another model is
 * served, a step was applied with other inputs): FAILED_PRECONDITION. Domain code throws it like
 * InvalidArgumentError; the handlers' wrappers send it as that status.
 */
export class FailedPreconditionError extends GrpcError {
  constructor(message: string) {
    super(grpc.status.FAILED_PRECONDITION, message);
    this.name = "FailedPreconditionError";
  }
}

export function notFound(message: string): GrpcError {
  return new GrpcError(grpc.status.NOT_FOUND, message);
}

/** Converts anything thrown by a handler to the status object grpc-js sends. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof GrpcError) return { code: err.code, details: err.message };
  if (isServiceError(err)) return { code: err.code, details: err.details };
  if (err instanceof Error && err.name === "AbortError") {
    // callSignal() aborts with "deadline exceeded" when the caller's deadline passes.
    const deadline = /deadline exceeded/i.test(err.message);
    return { code: deadline ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED, details: err.message };
  }
  // Redis away (ioredis gave up on a command, or the connection is closed): a retryable
  // UNAVAILABLE that says what is down, not INTERNAL with the client library's raw text.
  if (isRedisUnavailable(err)) {
    return { code: grpc.status.UNAVAILABLE, details: `Redis unavailable, retry later (${(err as Error).message})` };
  }
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}

/** An error of the Redis client that means the server cannot be reached right now. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "MaxRetriesPerRequestError") return true;
  // ioredis' own messages (a gRPC peer's ECONNREFUSED must not read as "Redis").
  return /Reached the max retries per request limit|^Connection is closed\.?$|^Stream isn't writeable/.test(err.message);
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    typeof err === "object" && err !== null && "code" in err && "details" in err && typeof (err as { code: unknown }).code === "number"
  );
}

/** Statuses worth retrying against another replica. */
export function isRetryable(err: unknown): boolean {
  return isServiceError(err) && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.RESOURCE_EXHAUSTED);
}
