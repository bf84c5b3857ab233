import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { GrpcError, type TrainStepRequest } from "@rlmesh/shared";
import { AppliedSteps, requestFingerprint } from "./applied-steps.js";

const req = (step: number, reward = 1, jobId = "j"): TrainStepRequest => ({
  jobId,
  step,
  seed: 0,
  params: null,
  samples: [{ promptId: "p", promptTokenIds: [1, 2], responseTokenIds: [3, 4], reward, policyVersion: 0, policyJobId: jobId, suffixTokenIds: [] }],
});

test("the fingerprint covers samples, params and seed", () => {
  assert.equal(requestFingerprint(req(1)), requestFingerprint(req(1)));
  assert.notEqual(requestFingerprint(req(1)), requestFingerprint(req(1, 0)));
  assert.notEqual(requestFingerprint(req(1)), requestFingerprint({ ...req(1), seed: 9 }));
  assert.notEqual(requestFingerprint(req(1)), requestFingerprint({ ...req(1), params: { lr: 0.1 } }));
  const moved = req(1);
  moved.samples[0] = { ...moved.samples[0]!, promptTokenIds: [1], responseTokenIds: [2, 3, 4] };
  assert.notEqual(requestFingerprint(req(1)), requestFingerprint(moved), "token boundaries matter");
});

test("find returns the recorded step, rejects a different request for it, forgets the oldest", () => {
  const a = new AppliedSteps([], 2);
  assert.equal(a.find(req(1)), undefined);
  a.add({ jobId: "j", step: 1, fingerprint: requestFingerprint(req(1)), policyVersion: 1, stats: { loss: 0.5 } });
  assert.equal(a.find(req(1))?.policyVersion, 1);
  assert.equal(a.find(req(1, 1, "other")), undefined);
  assert.throws(() => a.find(req(1, 0)), (err: unknown) => err instanceof GrpcError && err.code === grpc.status.FAILED_PRECONDITION);
  a.add({ jobId: "j", step: 2, fingerprint: requestFingerprint(req(2)), policyVersion: 2, stats: {} });
  a.add({ jobId: "j", step: 3, fingerprint: requestFingerprint(req(3)), policyVersion: 3, stats: {} });
  assert.equal(a.find(req(1)), undefined);
  const restored = new AppliedSteps(JSON.parse(JSON.stringify(a.toJSON())));
  assert.equal(restored.find(req(3))?.policyVersion, 3);
});
