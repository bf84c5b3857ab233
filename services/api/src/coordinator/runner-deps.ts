// What the job runner talks to: the job store, Redis, the rollout pool, the reward queue, the learner.
import type { Redis } from "ioredis";
import type { Logger } from "@rlmesh/shared";
import type { ApiMetrics } from "../api-metrics.js";
import type { JobStore } from "../job-store.js";
import type { LearnerClient, RewardScorer } from "./interfaces.js";
import type { RolloutPool } from "./rollout-pool.js";

export interface RunnerDeps {
  store: JobStore;
  redis: Redis;
  rollout: RolloutPool;
  rewards: RewardScorer;
  learner: LearnerClient;
  logger: Logger;
  metrics?: ApiMetrics;
  /** Largest fraction of a step's (or an eval's) candidates that may go unscored. @defaultValue DEFAULT_MAX_INFRA_FAILURE_RATE */
  maxInfraFailureRate?: number;
}
