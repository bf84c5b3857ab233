import type { HostTensor, LearnerStatusIn, TrainStepRequest, TrainStatsIn } from "@rlmesh/shared";

export interface TrainStepResult {
  /** The policy version after the step (unchanged when skipped). */
  policyVersion: number;
  stats: TrainStatsIn;
  /** True when this (job, step) had been applied before and the recorded result is returned. */
  replayed: boolean;
}

export interface ReportEvalResult {
  policyVersion: number;
  /** "" (nothing happened), "rollback" or "stop". */
  guardAction: string;
  guardReason: string;
}

/** What LearnerService needs from the GRPO trainer (jax-js over the shared ONNX graph). */
export interface Trainer {
  /** Throws InvalidArgumentError naming the field for a bad request (e.g. stale samples). */
  validate(req: TrainStepRequest): void;
  /** One GRPO update; returns its stats and the new policy version (unchanged when skipped). */
  trainStep(req: TrainStepRequest): Promise<TrainStepResult>;
  /** Feeds a held-out pass@1 to the collapse guard; a rollback publishes the restored weights as a new version. */
  reportEval(obs: { jobId: string; step: number; passAt1: number; n: number }): Promise<ReportEvalResult>;
  status(): LearnerStatusIn;
  checkpoint(): Promise<{ path: string; step: number; policyVersion: number }>;
  /** The current weights and their version (an immutable snapshot: safe to stream while training). */
  weights(): { version: number; tensors: HostTensor[] };
}
