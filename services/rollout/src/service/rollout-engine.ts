import type { GenerateRequest, GenerateResponseIn, HostTensor, ModelInfoIn } from "@rlmesh/shared";

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
  /**
   * Validates names/shapes/dtypes against the model and swaps atomically between batches;
   * throws (and keeps the old version) when they do not match.
   */
  updateWeights(version: number, tensors: HostTensor[]): Promise<void>;
  close(): Promise<void>;
}
