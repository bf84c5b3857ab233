// RolloutService.UpdateWeights over a real gRPC server, its engine faked at the seam: two pushes
// of the same version at once (a direct push the learner gave up on, then sent again with a call)
// leave the worker serving it and the second push answered "serving it already", not an error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chunkWeights, createClient, createLogger, loadProto, startGrpcServer, type HostTensor, type RolloutServiceClient, type UpdateWeightsResponse } from "@rlmesh/shared";
import { acceptsPolicy, formatPolicy, type PolicyRef } from "@rlmesh/shared/weights";
import { createRolloutService } from "./rollout-service.js";
import type { RolloutEngine } from "./rollout-engine.js";

/** An engine whose swaps take `swapMs` and run one at a time, refusing a version not newer than the served one (as WeightVersions does). */
function slowSwapEngine(swapMs: number): RolloutEngine & { swaps: PolicyRef[] } {
  let served: PolicyRef = { jobId: "job-r", version: 0 };
  let queue: Promise<void> = Promise.resolve();
  const swaps: PolicyRef[] = [];
  const unused = () => {
    throw new Error("not used in this test");
  };
  return {
    swaps,
    modelInfo: unused,
    validate: unused,
    generate: unused,
    validateInfill: unused,
    infill: unused,
    close: async () => undefined,
    servedPolicy: () => served,
    updateWeights(policy: PolicyRef): Promise<void> {
      const run = queue.then(async () => {
        if (!acceptsPolicy(policy, served)) throw new Error(`version ${policy.version} must be greater than the serving version ${served.version} of the same job`);
        await new Promise((r) => setTimeout(r, swapMs));
        served = policy;
        swaps.push(policy);
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}

test("two pushes of one version at once: one swap; the other is answered 'serving it already' (accepted false), not an error", async () => {
  const engine = slowSwapEngine(200);
  const logger = createLogger("rollout-service-test", { level: "error" });
  const { proto } = loadProto();
  const server = await startGrpcServer({
    port: 0,
    logger,
    services: [{ name: "rlmesh.v1.RolloutService", definition: proto.rlmesh.v1.RolloutService.service, implementation: createRolloutService({ engine, logger }) }],
  });
  const client: RolloutServiceClient = createClient(proto.rlmesh.v1.RolloutService, server.address);
  try {
    const tensors: HostTensor[] = [{ name: "w", dtype: "DTYPE_FLOAT32", shape: [4], data: Float32Array.from([1, 2, 3, 4]) }];
    const push = () =>
      new Promise<UpdateWeightsResponse>((resolve, reject) => {
        const stream = client.updateWeights((err, res) => (err ? reject(err) : resolve(res!)));
        for (const c of chunkWeights({ jobId: "job-r", version: 1 }, tensors)) stream.write(c);
        stream.end();
      });
    const [a, b] = await Promise.all([push(), push()]);
    assert.deepEqual(engine.swaps, [{ jobId: "job-r", version: 1 }], "swapped once");
    assert.equal(formatPolicy(engine.servedPolicy()), "job job-r v1");
    const replies = [a, b].map((r) => `${r.accepted} ${r.jobId} v${Number(r.version)}`).sort();
    assert.deepEqual(replies, ["false job-r v1", "true job-r v1"]);
    assert.match([a, b].find((r) => !r.accepted)!.message, /^serving job job-r v1 already$/);
  } finally {
    client.close();
    server.server.forceShutdown();
  }
});
