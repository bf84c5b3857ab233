import type { JobsOptions, Queue } from "bullmq";
import type { TestSpec } from "../datasets/index.js";

/** Per-candidate limits, enforced by the fork server inside the sandbox. */
export interface SandboxLimits {
  /** Wall-clock time for loading the program and for each test. @defaultValue 10000 */
  timeout_ms_per_test: number;
  /** Wall-clock budget for the whole candidate. @defaultValue 30000 */
  total_timeout_ms: number;
  /** Address-space limit of the candidate's processes (RLIMIT_AS). @defaultValue 512 */
  memory_mb: number;
  /** stdout+stderr bytes before the candidate is stopped. @defaultValue 1 MiB */
  output_bytes: number;
}

export { DEFAULT_REWARD_QUEUE } from "./queue-names.js";
/** Tries per job: infrastructure failures (sandbox_error) are retried, candidate failures are not. */
export const DEFAULT_REWARD_ATTEMPTS = 3;
/** First retry delay; doubles per attempt. */
export const DEFAULT_REWARD_BACKOFF_MS = 1000;
/** Finished jobs (and their rewards) stay readable this long. */
export const DEFAULT_RESULT_RETENTION_S = 24 * 3600;

/** Payload of one reward job: one candidate of one problem. */
export interface RewardJobData {
  job_id: string;
  step: number;
  sample_index: number;
  problem_id: string;
  /** Raw model output; the program is its last fenced code block. */
  response: string;
  tests: TestSpec;
  /** Overrides of the executor's default limits (clamped to its maximums). */
  limits?: Partial<SandboxLimits>;
}

/**
 * Idempotent BullMQ job id of a candidate: `<job>-<step>-<sample>`. BullMQ ids may not contain
 * ':', so it is replaced; the same candidate enqueued twice is one job.
 */
export function rewardJobId(jobId: string, step: number, sample: number): string {
  return `${jobId.replace(/:/g, "_")}-${step}-${sample}`;
}

/** Job options the producer sets: retries with exponential backoff, bounded retention. */
export function rewardJobOptions(data: RewardJobData, overrides: Partial<JobsOptions> = {}): JobsOptions {
  return {
    jobId: rewardJobId(data.job_id, data.step, data.sample_index),
    attempts: DEFAULT_REWARD_ATTEMPTS,
    backoff: { type: "exponential", delay: DEFAULT_REWARD_BACKOFF_MS },
    removeOnComplete: { age: DEFAULT_RESULT_RETENTION_S },
    removeOnFail: { age: DEFAULT_RESULT_RETENTION_S },
    ...overrides,
  };
}

/** Jobs per addBulk call (one MULTI each): tens of thousands of candidates go in slices. */
export const ENQUEUE_CHUNK = 1000;

/** Enqueues candidates (one job each, idempotent ids, in slices of ENQUEUE_CHUNK); returns the BullMQ jobs. */
export async function enqueueRewardJobs(queue: Queue, jobs: RewardJobData[], overrides: Partial<JobsOptions> = {}) {
  const out = [];
  for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) {
    const slice = jobs.slice(i, i + ENQUEUE_CHUNK);
    out.push(...(await queue.addBulk(slice.map((data) => ({ name: "reward", data, opts: rewardJobOptions(data, overrides) })))));
  }
  return out;
}
