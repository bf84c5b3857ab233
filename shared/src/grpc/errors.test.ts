import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { GrpcError, InvalidArgumentError, isRedisUnavailable, toServiceError } from "./errors.js";

test("a Redis outage reaches clients as a retryable UNAVAILABLE that names Redis, not INTERNAL with ioredis' text", () => {
  const gaveUp = Object.assign(new Error("Reached the max retries per request limit (which is 20). Refer to \"maxRetriesPerRequest\" option for details."), {
    name: "MaxRetriesPerRequestError",
  });
  for (const err of [gaveUp, new Error("Connection is closed.")]) {
    assert.ok(isRedisUnavailable(err), err.message);
    const s = toServiceError(err);
    assert.equal(s.code, grpc.status.UNAVAILABLE);
    assert.match(s.details ?? "", /^Redis unavailable, retry later/);
  }
  // Other failures keep their codes; a gRPC peer refusing a connection is not "Redis".
  assert.equal(toServiceError(new Error("connect ECONNREFUSED 127.0.0.1:50071")).code, grpc.status.INTERNAL);
  assert.equal(toServiceError(new InvalidArgumentError("spec.steps", "bad")).code, grpc.status.INVALID_ARGUMENT);
  assert.equal(toServiceError(new GrpcError(grpc.status.FAILED_PRECONDITION, "x")).code, grpc.status.FAILED_PRECONDITION);
});
