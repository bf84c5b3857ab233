import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import {
  chunkWeights,
  GrpcError,
  toServiceError,
  unary,
  type LearnerServiceHandlers,
  type Logger,
  type FinalizeWeightsRequest,
  type ReportEvalRequest,
  type StartJobRequest,
  type TrainStepRequest,
  type WeightChunkIn,
} from "@rlmesh/shared";
import type { GetWeightsRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/GetWeightsRequest";
import { JobFinalizedError, JobNotStartedError, RollbackCheckpointMissingError, type TrainerHost } from "./trainer/trainer.js";
import { ModelMismatchError } from "./trainer/model-compat.js";
import { checkTrainShape } from "./trainer/warmup.js";
import type { HostTensor } from "@rlmesh/shared";
import { acceptsPolicy, type PolicyRef } from "@rlmesh/shared/weights";

export interface PushResult {
  pushedTo: string[];
  pushFailed: string[];
  seconds: number;
  bytes: number;
}

export interface LearnerServiceDeps {
  /** The learner's jobs: one trainer at a time, for the job the coordinator started. */
  jobs: TrainerHost;
  logger: Logger;
  /** Pushes a job's version to every registered rollout worker (skipped workers catch up later). */
  push?: (policy: PolicyRef, tensors: HostTensor[]) => Promise<PushResult>;
}

/** The started job's policy and weights, or null before the first StartJob. */
function servedPolicy(jobs: TrainerHost): (PolicyRef & { tensors: HostTensor[] }) | null {
  const cur = jobs.current();
  if (!cur) return null;
  const w = cur.trainer.weights();
  return { jobId: cur.jobId, version: w.version, tensors: w.tensors };
}

/** The learner's domain errors as gRPC statuses (the one place they are turned into them). */
function asStatus(err: unknown): never {
  if (err instanceof JobNotStartedError || err instanceof ModelMismatchError || err instanceof JobFinalizedError)
    throw new GrpcError(grpcStatus.FAILED_PRECONDITION, err.message);
  if (err instanceof RollbackCheckpointMissingError) throw new GrpcError(grpcStatus.INTERNAL, err.message);
  throw err;
}

export function createLearnerService(deps: LearnerServiceDeps): LearnerServiceHandlers {
  const { jobs, logger } = deps;
  // One change of the weights at a time (StartJob, TrainStep, a guard rollback): each sees the
  // previous one's weights, and a change that published a new policy (a newer version, or
  // another job's) pushes it to the workers.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(change: () => Promise<T>, pushAnyway: (r: T) => boolean = () => false) => {
    const run = queue.then(async () => {
      const before = servedPolicy(jobs);
      const result = await change();
      const latest = servedPolicy(jobs);
      const changed = latest !== null && (before === null || acceptsPolicy(latest, before));
      const push = deps.push && latest && (changed || pushAnyway(result)) ? await deps.push(latest, latest.tensors) : undefined;
      return { result, push };
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    StartJob: unary(logger, "StartJob", async (req: StartJobRequest) => {
      const initFrom = req.initFrom ? { ...(req.initFrom.job ? { job: req.initFrom.job } : {}), ...(req.initFrom.checkpoint ? { checkpoint: req.initFrom.checkpoint } : {}) } : null;
      // Always pushed: a job's first rollout must see its weights, also on a worker that was
      // serving them already (it answers "not newer" and counts as pushed).
      const { result, push } = await serialized(
        () => jobs.startJob({ jobId: req.jobId, modelDir: req.modelDir, initFrom, trainShape: checkTrainShape(req.trainShape) }),
        () => true,
      ).catch(asStatus);
      // After the push (a shape's compilation keeps the event loop busy for seconds), and after
      // this reply is on its way: the job's first rollouts and step-0 eval overlap the warm-up.
      setImmediate(() => jobs.warmUp?.(result.jobId));
      return { ...result, pushedTo: push?.pushedTo ?? [], pushFailed: push?.pushFailed ?? [] };
    }),
    TrainStep: unary(logger, "TrainStep", async (req: TrainStepRequest) => {
      try {
        jobs.trainerFor(req.jobId).validate(req);
      } catch (err) {
        asStatus(err);
      }
      // A replay (the api retrying after a crash) pushes again: the crash may have come
      // between the checkpoint and the push. Workers that already have it just accept.
      const { result, push } = await serialized(() => jobs.trainerFor(req.jobId).trainStep(req), (r) => r.replayed).catch(asStatus);
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
        jobs.trainerFor(req.jobId).reportEval({ jobId: req.jobId, step: Number(req.step), passAt1: req.passAt1, n: req.n }),
      ).catch(asStatus);
      return { ...result, pushedTo: push?.pushedTo ?? [] };
    }),
    FinalizeWeights: unary(logger, "FinalizeWeights", async (req: FinalizeWeightsRequest) => {
      // Installing the average publishes a new version: the workers must serve it before the reply.
      const { result, push } = await serialized(() => jobs.trainerFor(req.jobId).finalizeWeights(req.checkOnly)).catch(asStatus);
      return { ...result, pushedTo: push?.pushedTo ?? [], pushFailed: push?.pushFailed ?? [] };
    }),
    GetStatus: unary(logger, "GetStatus", async () => {
      const cur = jobs.current();
      if (!cur) return { policyVersion: 0, step: 0, lastCheckpoint: "", lastCheckpointStep: -1, modelName: "", skippedBatches: 0, jobId: "" };
      return { ...cur.trainer.status(), jobId: cur.jobId };
    }),
    Checkpoint: unary(logger, "Checkpoint", async () => {
      const cur = jobs.current();
      if (!cur) throw new GrpcError(grpcStatus.FAILED_PRECONDITION, "no job is started on the learner: nothing to checkpoint");
      return cur.trainer.checkpoint();
    }),
    GetWeights: (call: grpc.ServerWritableStream<GetWeightsRequest__Output, WeightChunkIn>) => {
      const served = servedPolicy(jobs);
      (served
        ? streamWeights(call, served)
        : Promise.reject(new GrpcError(grpcStatus.FAILED_PRECONDITION, "no job is started on the learner: no weights to give"))
      ).then(
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
  { jobId, version, tensors }: PolicyRef & { tensors: HostTensor[] },
): Promise<void> {
  if (call.request.minVersion > version) {
    throw new GrpcError(grpcStatus.FAILED_PRECONDITION, `min_version ${call.request.minVersion} is newer than the learner's version ${version} (job ${jobId})`);
  }
  let cancelled = false;
  let wake = (): void => undefined;
  call.once("cancelled", () => {
    cancelled = true;
    wake();
  });
  for (const chunk of chunkWeights({ jobId, version }, tensors)) {
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
