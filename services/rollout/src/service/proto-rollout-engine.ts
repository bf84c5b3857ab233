// The rollout runtime as rollout.proto sees it: proto requests in, proto responses out, and the
// runtime's domain errors (InvalidDecodeParamsError, WeightValidationError) turned into gRPC
// statuses here, at the service boundary.
import { status } from "@grpc/grpc-js";
import { GrpcError, InvalidArgumentError, type GenerateRequest, type GenerateResponseIn, type HostTensor, type ModelInfoIn } from "@rlmesh/shared";
import { isNewerVersion, type PolicyRef } from "@rlmesh/shared/weights";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { SupersededSwapError, type OrtRolloutEngine } from "../runtime/ort-rollout-engine.js";
import { WeightValidationError } from "../runtime/weight-validation.js";
import { decodeParamsFromProto, generateResponseToProto, modelInfoToProto, requestItemsFromProto } from "./proto-mapping.js";
import type { RolloutEngine } from "./rollout-engine.js";
import { infillItemsFromProto, infillOptionsFromProto, infillResponseToProto, type InfillRequest, type InfillResponseIn } from "./infill-proto.js";
import { supportsVariableLength, type InfillResult } from "../runtime/infill-requests.js";

export interface ProtoRolloutEngineHooks {
  /**
   * Each completed Infill with the runtime's result (which has what the proto response lacks:
   * per-sample expand/delete counts) and the call's seconds; main.ts feeds the infill metrics.
   */
  onInfill?: (res: InfillResult, seconds: number) => void;
}

export class ProtoRolloutEngine implements RolloutEngine {
  constructor(
    readonly runtime: OrtRolloutEngine,
    private readonly hooks: ProtoRolloutEngineHooks = {},
  ) {}

  /**
   * Checks a Generate request without decoding: parameters, cache support, prompt lengths,
   * min_policy_version. Throws InvalidArgumentError naming the field, or FAILED_PRECONDITION.
   */
  validate(req: GenerateRequest): void {
    const serving = this.runtime.policyVersion;
    if (req.minPolicyVersion && isNewerVersion(req.minPolicyVersion, serving)) {
      throw new GrpcError(status.FAILED_PRECONDITION, `min_policy_version ${req.minPolicyVersion} is newer than the serving version ${serving}`);
    }
    asInvalidArgument(() => this.runtime.prepare(requestItemsFromProto(req), decodeParamsFromProto(req.params)));
  }

  async generate(req: GenerateRequest, signal?: AbortSignal): Promise<GenerateResponseIn> {
    this.validate(req);
    const res = await asInvalidArgumentAsync(() =>
      this.runtime.generateSamples(requestItemsFromProto(req), decodeParamsFromProto(req.params), signal ? { signal } : {}),
    );
    return generateResponseToProto(res, this.runtime.workerId);
  }

  /** Checks an Infill request without decoding; throws InvalidArgumentError naming the field. */
  validateInfill(req: InfillRequest): void {
    asInvalidArgument(() => this.runtime.prepareInfill(infillItemsFromProto(req), infillOptionsFromProto(req)));
  }

  async infill(req: InfillRequest, signal?: AbortSignal): Promise<InfillResponseIn> {
    this.validateInfill(req);
    const t0 = performance.now();
    const res = await asInvalidArgumentAsync(() =>
      this.runtime.infillSamples(infillItemsFromProto(req), { ...infillOptionsFromProto(req), ...(signal ? { signal } : {}) }),
    );
    this.hooks.onInfill?.(res, (performance.now() - t0) / 1000);
    return infillResponseToProto(res, this.runtime.workerId);
  }

  servedPolicy(): PolicyRef {
    return { jobId: this.runtime.policyJobId, version: this.runtime.policyVersion };
  }

  /**
   * swapWeights with validation failures as INVALID_ARGUMENT (the old version keeps serving);
   * a superseded catch-up (`ifServing` no longer served) as ABORTED.
   */
  async updateWeights(policy: PolicyRef, tensors: readonly HostTensor[], ifServing?: PolicyRef): Promise<void> {
    try {
      await this.runtime.swapWeights(policy.version, tensors, { jobId: policy.jobId, ...(ifServing ? { ifServing } : {}) });
    } catch (err) {
      if (err instanceof SupersededSwapError) throw new GrpcError(status.ABORTED, `weights: ${err.message}`);
      if (err instanceof WeightValidationError) throw new InvalidArgumentError("weights", err.message);
      throw err;
    }
  }

  modelInfo(): ModelInfoIn {
    const info = this.runtime.info();
    return { ...modelInfoToProto(info, this.runtime.workerId), infillVariableLength: supportsVariableLength(info.manifest) };
  }

  close(): Promise<void> {
    return this.runtime.close();
  }
}

function toInvalidArgument(err: unknown): unknown {
  if (err instanceof InvalidDecodeParamsError) {
    const msg = err.message.startsWith(`${err.field} `) ? err.message.slice(err.field.length + 1) : err.message;
    return new InvalidArgumentError(err.field, msg);
  }
  return err;
}

function asInvalidArgument<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toInvalidArgument(err);
  }
}

async function asInvalidArgumentAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toInvalidArgument(err);
  }
}
