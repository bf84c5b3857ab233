import type { GenerateRequest, GenerateResponseIn, HostTensor, ModelInfoIn } from "@rlmesh/shared";
import type { PolicyRef } from "@rlmesh/shared/weights";
import type { InfillRequest, InfillResponseIn } from "./infill-proto.js";

/**
 * What the gRPC RolloutService needs from a model runtime. The onnxruntime implementation runs
 * sessions in worker_threads; the seam keeps the service testable.
 */
export interface RolloutEngine {
  /** Model description and the policy version now serving. */
  modelInfo(): ModelInfoIn;
  /** Throws InvalidArgumentError naming the field when the request's parameters are bad. */
  validate(req: GenerateRequest): void;
  /** Generates every prompt × samples_per_prompt; stops between steps when `signal` aborts. */
  generate(req: GenerateRequest, signal: AbortSignal): Promise<GenerateResponseIn>;
  /** Throws InvalidArgumentError naming the field when an Infill request is bad. */
  validateInfill(req: InfillRequest): void;
  /** Fills the middle of every item × samples_per_item; stops between steps when `signal` aborts. */
  infill(req: InfillRequest, signal: AbortSignal): Promise<InfillResponseIn>;
  /** The policy served now: its job ("" = the model directory's own weights) and version. */
  servedPolicy(): PolicyRef;
  /**
   * Validates names/shapes/dtypes against the model and swaps atomically between batches;
   * throws (and keeps the old version) when they do not match, when `policy` is not accepted
   * over the served one (acceptsPolicy), or when `ifServing` is given and no longer served.
   */
  updateWeights(policy: PolicyRef, tensors: HostTensor[], ifServing?: PolicyRef): Promise<void>;
  close(): Promise<void>;
}
