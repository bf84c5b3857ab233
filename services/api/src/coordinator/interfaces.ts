import type { InfraFailure } from "@rlmesh/shared/reward/reward-result";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type {
  GrpoParams,
  FinalizeWeightsRequestIn,
  FinalizeWeightsResponse,
  ReportEvalRequestIn,
  ReportEvalResponse,
  SandboxLimits,
  StartJobRequestIn,
  StartJobResponse,
  TrainStepRequestIn,
  TrainStepResponse,
} from "@rlmesh/shared";

/** One candidate to score. */
export interface Candidate {
  jobId: string;
  step: number;
  sampleIndex: number;
  row: CanonicalRow;
  response: string;
}

/**
 * A candidate's score: its reward from the sandbox, or — when the infrastructure failed on every
 * attempt — no reward at all (`reward: null`, the failure and its reason). A `null` sample is
 * dropped from its group; it is never trained on as reward 0.
 */
export type Score = { reward: number; status: string } | { reward: null; status: InfraFailure; reason: string };

/** Scores candidates through the reward queue (BullMQ → executors → Docker). */
export interface RewardScorer {
  /** Resolves when every candidate has a final result; order follows `candidates`. */
  score(candidates: Candidate[], limits: SandboxLimits, signal?: AbortSignal): Promise<Score[]>;
  /** Removes queued, not-yet-started reward jobs of a job (on cancel). */
  purge(jobId: string): Promise<number>;
  /** Executors consuming the reward queue now (for "waiting for an executor" events). */
  executors?(): Promise<number>;
}

export interface LearnerClient {
  /**
   * Makes the job the learner's: its model (or init_from) at version 0, or its own checkpoints
   * when it has some; its weights are on the rollout workers when this resolves.
   */
  startJob(req: StartJobRequestIn, signal?: AbortSignal): Promise<StartJobResponse>;
  trainStep(req: TrainStepRequestIn, signal?: AbortSignal): Promise<TrainStepResponse>;
  /** Held-out pass@1 for the learner's collapse guard (optional: a learner without a guard). */
  reportEval?(req: ReportEvalRequestIn, signal?: AbortSignal): Promise<ReportEvalResponse>;
  /** The job's moving average of its weights (grpo.ema_decay) as its final weights (see learner.proto FinalizeWeights). */
  finalizeWeights?(req: FinalizeWeightsRequestIn, signal?: AbortSignal): Promise<FinalizeWeightsResponse>;
  /** Null when the learner answers SERVING, else why not (for "waiting for the learner" events). */
  unavailable?(): Promise<string | null>;
}

export type { GrpoParams };
