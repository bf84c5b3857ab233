import type * as grpc from "@grpc/grpc-js";
import { chunkWeights, unary, type LearnerServiceHandlers, type Logger, type TrainStepRequest, type WeightChunkIn } from "@rlmesh/shared";
import type { GetWeightsRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/GetWeightsRequest";
import type { Trainer } from "./trainer.js";

export interface PushResult {
  pushedTo: string[];
  pushFailed: string[];
  seconds: number;
  bytes: number;
}

export interface LearnerServiceDeps {
  trainer: Trainer;
  logger: Logger;
  /** Pushes the new version to every registered rollout worker (skipped workers catch up later). */
  push?: (version: number) => Promise<PushResult>;
}

export function createLearnerService(deps: LearnerServiceDeps): LearnerServiceHandlers {
  const { trainer, logger } = deps;
  // One update at a time: TrainSteps are serialised so each sees the previous one's weights.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    TrainStep: unary(logger, "TrainStep", async (req: TrainStepRequest) => {
      trainer.validate(req);
      const run = queue.then(async () => {
        const { policyVersion, stats } = await trainer.trainStep(req);
        const push = deps.push && !stats.skipped ? await deps.push(policyVersion) : undefined;
        return {
          policyVersion,
          stats,
          pushedTo: push?.pushedTo ?? [],
          pushFailed: push?.pushFailed ?? [],
          pushSeconds: push?.seconds ?? 0,
          pushBytes: push?.bytes ?? 0,
        };
      });
      queue = run.catch(() => undefined);
      return run;
    }),
    GetStatus: unary(logger, "GetStatus", async () => trainer.status()),
    Checkpoint: unary(logger, "Checkpoint", async () => trainer.checkpoint()),
    GetWeights: (call: grpc.ServerWritableStream<GetWeightsRequest__Output, WeightChunkIn>) => {
      const { version, tensors } = trainer.weights();
      void (async () => {
        for (const chunk of chunkWeights(version, tensors)) {
          if (!call.write(chunk)) await new Promise((r) => call.once("drain", r));
        }
        call.end();
      })();
    },
  };
}
