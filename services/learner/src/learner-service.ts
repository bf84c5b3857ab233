import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import { chunkWeights, GrpcError, toServiceError, unary, type LearnerServiceHandlers, type Logger, type ReportEvalRequest, type TrainStepRequest, type WeightChunkIn } from "@rlmesh/shared";
import type { GetWeightsRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/GetWeightsRequest";
import type { Trainer } from "./trainer/trainer.js";
import type { HostTensor } from "@rlmesh/shared";
import { isNewerVersion } from "@rlmesh/shared/weights";

export interface PushResult {
  pushedTo: string[];
  pushFailed: string[];
  seconds: number;
  bytes: number;
}

export interface LearnerServiceDeps {
  trainer: Trainer;
  logger: Logger;
  /** Pushes a version to every registered rollout worker (skipped workers catch up later). */
  push?: (version: number, tensors: HostTensor[]) => Promise<PushResult>;
}

export function createLearnerService(deps: LearnerServiceDeps): LearnerServiceHandlers {
  const { trainer, logger } = deps;
  // One change of the weights at a time (TrainStep, a guard rollback): each sees the previous
  // one's weights, and a change that published a new version pushes it to the workers.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(change: () => Promise<T>, pushAnyway: (r: T) => boolean = () => false) => {
    const run = queue.then(async () => {
      const before = trainer.status().policyVersion;
      const result = await change();
      const latest = trainer.weights();
      const newer = isNewerVersion(latest.version, before);
      const push = deps.push && (newer || pushAnyway(result)) ? await deps.push(latest.version, latest.tensors) : undefined;
      return { result, push };
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    TrainStep: unary(logger, "TrainStep", async (req: TrainStepRequest) => {
      trainer.validate(req);
      // A replay (the api retrying after a crash) pushes again: the crash may have come
      // between the checkpoint and the push. Workers that already have it just accept.
      const { result, push } = await serialized(() => trainer.trainStep(req), (r) => r.replayed);
      return {
        policyVersion: result.policyVersion,
        stats: result.stats,
        pushedTo: push?.pushedTo ?? [],
        pushFailed: push?.pushFailed ?? [],
        pushSeconds: push?.seconds ?? 0,
        pushBytes: push?.bytes ?? 0,
      };
    }),
    ReportEval: unary(logger, "ReportEval", async (req: ReportEvalRequest) => {
      // A rollback publishes the restored weights as a new version: the workers must serve it.
      const { result, push } = await serialized(() =>
        trainer.reportEval({ jobId: req.jobId, step: Number(req.step), passAt1: req.passAt1, n: req.n }),
      );
      return { ...result, pushedTo: push?.pushedTo ?? [] };
    }),
    GetStatus: unary(logger, "GetStatus", async () => trainer.status()),
    Checkpoint: unary(logger, "Checkpoint", async () => trainer.checkpoint()),
    GetWeights: (call: grpc.ServerWritableStream<GetWeightsRequest__Output, WeightChunkIn>) => {
      streamWeights(call, trainer.weights()).then(
        () => call.end(),
        // emit("error") sends the status (destroy() would drop it and leave the client hanging).
        (err: unknown) => call.emit("error", toServiceError(err)),
      );
    },
  };
}

/** Streams one immutable weight snapshot (a TrainStep running meanwhile cannot tear it). */
async function streamWeights(
  call: grpc.ServerWritableStream<GetWeightsRequest__Output, WeightChunkIn>,
  { version, tensors }: { version: number; tensors: HostTensor[] },
): Promise<void> {
  if (call.request.minVersion > version) {
    throw new GrpcError(grpcStatus.FAILED_PRECONDITION, `min_version ${call.request.minVersion} is newer than the learner's version ${version}`);
  }
  let cancelled = false;
  let wake = (): void => undefined;
  call.once("cancelled", () => {
    cancelled = true;
    wake();
  });
  for (const chunk of chunkWeights(version, tensors)) {
    if (cancelled) return;
    // A client that goes away mid-stream never drains: the cancel wakes the wait instead.
    if (!call.write(chunk)) {
      await new Promise<void>((r) => {
        wake = r;
        call.once("drain", () => r());
      });
    }
  }
}
