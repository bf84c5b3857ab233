import type * as grpc from "@grpc/grpc-js";
import {
  callSignal,
  check,
  clientStream,
  GrpcError,
  unary,
  WeightStreamError,
  type GenerateRequest,
  type Logger,
  type RolloutServiceHandlers,
  type UpdateWeightsResponseIn,
  type WeightChunk,
} from "@rlmesh/shared";
import { status } from "@grpc/grpc-js";
import type { RolloutEngine } from "./rollout-engine.js";
import type { InfillRequest } from "./infill-proto.js";
import type { RolloutMetrics } from "./rollout-metrics.js";
import { acceptsPolicy, formatPolicy } from "@rlmesh/shared/weights";
import { receiveUpdateWeights, type DirectPushReply, type ReceivedWeights } from "@rlmesh/shared/weight-data";

export const MAX_PROMPTS_PER_REQUEST = 4096;
export const MAX_SAMPLES_PER_PROMPT = 1024;

export interface RolloutServiceDeps {
  engine: RolloutEngine;
  logger: Logger;
  metrics?: RolloutMetrics;
  /** Called when a Generate asks for another job's policy than the one served (starts a catch-up). */
  onOtherJob?: (jobId: string) => void;
}

function validateRequest(req: GenerateRequest): void {
  if (req.prompts.length === 0) throw new GrpcError(status.INVALID_ARGUMENT, "prompts: must not be empty");
  check.int("prompts", req.prompts.length, 1, MAX_PROMPTS_PER_REQUEST);
  check.int("samples_per_prompt", req.samplesPerPrompt, 1, MAX_SAMPLES_PER_PROMPT);
  req.prompts.forEach((p, i) => check.nonEmpty(`prompts[${i}].text`, p.text));
}

export function createRolloutService(deps: RolloutServiceDeps): RolloutServiceHandlers {
  const { engine, logger, metrics } = deps;
  /** A received version into the session (UpdateWeights' reply): only a newer version of the same job, or another job's. */
  const install = async ({ version, jobId, tensors, received }: ReceivedWeights, t0: number): Promise<DirectPushReply> => {
    const current = engine.servedPolicy();
    if (!acceptsPolicy({ jobId, version }, current)) {
      return {
        accepted: false,
        version: current.version,
        jobId: current.jobId,
        message: `version ${version} is not newer than the serving version ${current.version} of the same job (${formatPolicy(current)})`,
        bytesReceived: received,
        swapSeconds: 0,
      };
    }
    try {
      await engine.updateWeights({ jobId, version }, tensors);
    } catch (err) {
      // The same version installed meanwhile by another push of it (a direct push the learner
      // gave up on, then sent again with a call): it serves, as the learner wants.
      const now = engine.servedPolicy();
      if (!acceptsPolicy({ jobId, version }, now)) {
        return { accepted: false, version: now.version, jobId: now.jobId, message: `serving ${formatPolicy(now)} already`, bytesReceived: received, swapSeconds: 0 };
      }
      throw err;
    }
    const swapSeconds = (performance.now() - t0) / 1000;
    metrics?.observeSwap(version, swapSeconds, received);
    logger.info("weights swapped", { version, job: jobId, bytes: received, seconds: swapSeconds });
    return { accepted: true, version, jobId, message: "ok", bytesReceived: received, swapSeconds };
  };
  return {
    Generate: unary(logger, "Generate", async (req: GenerateRequest, call) => {
      validateRequest(req);
      const served = engine.servedPolicy();
      if (req.policyJobId && req.policyJobId !== served.jobId) {
        // Never generate a job's samples with another job's weights: the learner has (or is about
        // to have) pushed this job's; a worker that missed the push pulls them now.
        deps.onOtherJob?.(req.policyJobId);
        throw new GrpcError(
          status.UNAVAILABLE,
          `policy_job_id: this worker serves ${formatPolicy(served)}, not job ${req.policyJobId}'s policy; it is catching up with the learner, retry`,
        );
      }
      engine.validate(req);
      const t0 = performance.now();
      const res = await engine.generate(req, callSignal(call));
      metrics?.observeGenerate(res, (performance.now() - t0) / 1000);
      return res;
    }),
    Infill: unary(logger, "Infill", async (req: InfillRequest, call) => {
      if (req.items.length === 0) throw new GrpcError(status.INVALID_ARGUMENT, "items: must not be empty");
      check.int("items", req.items.length, 1, MAX_PROMPTS_PER_REQUEST);
      if (req.samplesPerItem) check.int("samples_per_item", req.samplesPerItem, 1, MAX_SAMPLES_PER_PROMPT);
      const served = engine.servedPolicy();
      if (req.policyJobId && req.policyJobId !== served.jobId) {
        deps.onOtherJob?.(req.policyJobId);
        throw new GrpcError(
          status.UNAVAILABLE,
          `policy_job_id: this worker serves ${formatPolicy(served)}, not job ${req.policyJobId}'s policy; it is catching up with the learner, retry`,
        );
      }
      engine.validateInfill(req);
      return engine.infill(req, callSignal(call));
    }),
    UpdateWeights: clientStream(logger, "UpdateWeights", async (call: grpc.ServerReadableStream<WeightChunk, UpdateWeightsResponseIn>) => {
      const t0 = performance.now();
      try {
        // Chunks on the stream, or a tcp-v1 data connection that the call's metadata asks for;
        // later versions may come on that connection alone (direct pushes), installed the same way.
        return await install(await receiveUpdateWeights(call, undefined, install), t0);
      } catch (err) {
        if (err instanceof WeightStreamError) throw new GrpcError(status.INVALID_ARGUMENT, `weights: ${err.message}`);
        throw err;
      }
    }),
    GetModelInfo: unary(logger, "GetModelInfo", async () => engine.modelInfo()),
  };
}
