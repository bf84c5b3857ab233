import type { HostTensor, LearnerStatusIn, TrainStepRequest, TrainStatsIn } from "@rlmesh/shared";
import type { JobTrainShape } from "./warmup.js";

export interface TrainStepResult {
  /** The policy version after the step (unchanged when skipped). */
  policyVersion: number;
  stats: TrainStatsIn;
  /** True when this (job, step) had been applied before and the recorded result is returned. */
  replayed: boolean;
}

/** What FinalizeWeights did (or, checking, would do). */
export interface FinalizeResult {
  policyVersion: number;
  /** The job's final weights are (would become) its moving average. */
  averaged: boolean;
  /** An earlier call finalized the job already. */
  alreadyFinal: boolean;
  averagedUpdates: number;
  emaDecay: number;
}

/** A TrainStep for a job whose final weights are installed (FAILED_PRECONDITION). */
export class JobFinalizedError extends Error {
  override name = "JobFinalizedError";
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
  /** FinalizeWeights (learner.proto): the moving average, if kept, becomes the job's final weights. */
  finalizeWeights(checkOnly?: boolean): Promise<FinalizeResult>;
}

/** Where a job's first weights come from instead of its model_dir (InitFrom in learner.proto). */
export interface InitFromInput {
  /** A job's final weights: its newest checkpoint on this learner. */
  job?: string;
  /** A learner checkpoint directory: its newest valid checkpoint. */
  checkpoint?: string;
}

export interface StartJobInput {
  jobId: string;
  modelDir: string;
  initFrom?: InitFromInput | null;
  /** The job's TrainStep shape (StartJob's train_shape, checked): its warm-up compiles these shapes. */
  trainShape?: JobTrainShape | null;
}

export interface StartedJob {
  jobId: string;
  policyVersion: number;
  /** True when the job went on from its own checkpoints (or was the learner's job already). */
  resumed: boolean;
  modelName: string;
  /** "model_dir", "job:ID", "checkpoint:DIR" or "resume". */
  initSource: string;
}

/** A TrainStep, ReportEval or Checkpoint for a job that is not the learner's (FAILED_PRECONDITION). */
export class JobNotStartedError extends Error {
  override name = "JobNotStartedError";
}

/** The collapse guard asked for a rollback but no valid checkpoint is left to restore (INTERNAL). */
export class RollbackCheckpointMissingError extends Error {
  override name = "RollbackCheckpointMissingError";
}

/** The learner's jobs as LearnerService sees them: one trainer at a time, for the started job. */
export interface TrainerHost {
  /** The job the learner trains now, or null before the first StartJob. */
  current(): { jobId: string; trainer: Trainer } | null;
  /** The trainer of `jobId`; throws JobNotStartedError when the learner runs another job (or none). */
  trainerFor(jobId: string): Trainer;
  /** Makes `jobId` the learner's job (resumes it from its own checkpoints when it has some). */
  startJob(input: StartJobInput): Promise<StartedJob>;
  /** Starts compiling the started job's batch shapes in the background (none when not configured). */
  warmUp?(jobId: string): void;
}
