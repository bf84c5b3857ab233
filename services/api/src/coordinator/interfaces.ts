import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type { GrpoParams, ReportEvalRequestIn, ReportEvalResponse, SandboxLimits, TrainStepRequestIn, TrainStepResponse } from "@rlmesh/shared";

/** One candidate to score. */
export interface Candidate {
  jobId: string;
  step: number;
  sampleIndex: number;
  row: CanonicalRow;
  response: string;
}

export interface Score {
  reward: number;
  status: string;
}

/** Scores candidates through the reward queue (BullMQ → executors → Docker). */
export interface RewardScorer {
  /** Resolves when every candidate has a final result; order follows `candidates`. */
  score(candidates: Candidate[], limits: SandboxLimits, signal?: AbortSignal): Promise<Score[]>;
  /** Removes queued, not-yet-started reward jobs of a job (on cancel). */
  purge(jobId: string): Promise<number>;
}

export interface LearnerClient {
  trainStep(req: TrainStepRequestIn, signal?: AbortSignal): Promise<TrainStepResponse>;
  /** Held-out pass@1 for the learner's collapse guard (optional: a learner without a guard). */
  reportEval?(req: ReportEvalRequestIn, signal?: AbortSignal): Promise<ReportEvalResponse>;
}

export type { GrpoParams };
