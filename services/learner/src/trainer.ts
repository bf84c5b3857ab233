import type { HostTensor, LearnerStatusIn, TrainStepRequest, TrainStatsIn } from "@rlmesh/shared";

/** What LearnerService needs from the GRPO trainer (jax-js over the shared ONNX graph). */
export interface Trainer {
  /** Throws InvalidArgumentError naming the field for a bad request (e.g. stale samples). */
  validate(req: TrainStepRequest): void;
  /** One GRPO update; returns its stats and the new policy version (unchanged when skipped). */
  trainStep(req: TrainStepRequest): Promise<{ policyVersion: number; stats: TrainStatsIn }>;
  status(): LearnerStatusIn;
  checkpoint(): Promise<{ path: string; step: number; policyVersion: number }>;
  /** The current weights and their version. */
  weights(): { version: number; tensors: HostTensor[] };
}
