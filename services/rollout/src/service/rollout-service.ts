import type * as grpc from "@grpc/grpc-js";
import {
  callSignal,
  check,
  clientStream,
  GrpcError,
  unary,
  WeightAssembler,
  WeightStreamError,
  type GenerateRequest,
  type Logger,
  type RolloutServiceHandlers,
  type UpdateWeightsResponseIn,
  type WeightChunk,
} from "@rlmesh/shared";
import { status } from "@grpc/grpc-js";
import type { RolloutEngine } from "./rollout-engine.js";
import type { RolloutMetrics } from "./rollout-metrics.js";
import { isNewerVersion } from "@rlmesh/shared/weights";

export const MAX_PROMPTS_PER_REQUEST = 4096;
export const MAX_SAMPLES_PER_PROMPT = 1024;

export interface RolloutServiceDeps {
  engine: RolloutEngine;
  logger: Logger;
  metrics?: RolloutMetrics;
}

function validateRequest(req: GenerateRequest): void {
  if (req.prompts.length === 0) throw new GrpcError(status.INVALID_ARGUMENT, "prompts: must not be empty");
  check.int("prompts", req.prompts.length, 1, MAX_PROMPTS_PER_REQUEST);
  check.int("samples_per_prompt", req.samplesPerPrompt, 1, MAX_SAMPLES_PER_PROMPT);
  req.prompts.forEach((p, i) => check.nonEmpty(`prompts[${i}].text`, p.text));
}

export function createRolloutService(deps: RolloutServiceDeps): RolloutServiceHandlers {
  const { engine, logger, metrics } = deps;
  return {
    Generate: unary(logger, "Generate", async (req: GenerateRequest, call) => {
      validateRequest(req);
      engine.validate(req);
      const t0 = performance.now();
      const res = await engine.generate(req, callSignal(call));
      metrics?.observeGenerate(res, (performance.now() - t0) / 1000);
      return res;
    }),
    UpdateWeights: clientStream(logger, "UpdateWeights", async (call: grpc.ServerReadableStream<WeightChunk, UpdateWeightsResponseIn>) => {
      const asm = new WeightAssembler();
      const t0 = performance.now();
      try {
        for await (const chunk of call as AsyncIterable<WeightChunk>) asm.add(chunk);
        const { version, tensors } = asm.finish();
        const current = Number(engine.modelInfo().policyVersion ?? 0);
        if (!isNewerVersion(version, current)) {
          return {
            accepted: false,
            version: current,
            message: `version ${version} is not newer than the serving version ${current}`,
            bytesReceived: asm.received,
          };
        }
        await engine.updateWeights(version, tensors);
        const swapSeconds = (performance.now() - t0) / 1000;
        metrics?.observeSwap(version, swapSeconds, asm.received);
        logger.info("weights swapped", { version, bytes: asm.received, seconds: swapSeconds });
        return { accepted: true, version, message: "ok", bytesReceived: asm.received, swapSeconds };
      } catch (err) {
        if (err instanceof WeightStreamError) throw new GrpcError(status.INVALID_ARGUMENT, `weights: ${err.message}`);
        throw err;
      }
    }),
    GetModelInfo: unary(logger, "GetModelInfo", async () => engine.modelInfo()),
  };
}
