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

/** BullMQ job name of a batch: several candidates in one job (RewardBatchData), one result each. */
export const REWARD_BATCH_JOB = "reward-batch";

/** Most candidates in one batch job (a producer's batch size is clamped to it). */
export const MAX_REWARD_BATCH = 64;

/** `n` when it is a batch size (an integer in 1..MAX_REWARD_BATCH), else an Error naming `what`. */
export function checkRewardBatchSize(n: number, what = "reward batch size"): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_REWARD_BATCH) throw new Error(`${what} must be an integer in 1..${MAX_REWARD_BATCH}, got ${n}`);
  return n;
}

/**
 * Payload of a batch job: candidates of one job and step, scored by one executor on its sandboxes
 * (as many at once as it has), returned as one RewardResult per candidate, in order. The queue's
 * cost (a fetch, a lock, a completion, an event) is paid once per batch instead of per candidate;
 * the price is coarser load balancing (a batch is one executor's) and a retry that re-runs the
 * whole batch (an infrastructure failure of any of its candidates fails the attempt).
 */
export interface RewardBatchData {
  candidates: RewardJobData[];
}

/**
 * Idempotent id of a batch: the id of its first candidate plus `-b<count>`, so a step re-run that
 * forms the same batches finds them (and a purge by `<job>-` prefix removes them).
 */
export function rewardBatchId(batch: RewardBatchData): string {
  const first = batch.candidates[0];
  if (!first) throw new Error("a reward batch needs at least one candidate");
  return `${rewardJobId(first.job_id, first.step, first.sample_index)}-b${batch.candidates.length}`;
}

/**
 * Cuts candidates into batches of at most `size` (clamped to 1..MAX_REWARD_BATCH), in order; a
 * batch never mixes jobs or steps. Size 1 still makes one batch per candidate: callers that want
 * plain per-candidate jobs use enqueueRewardJobs instead.
 */
export function groupRewardBatches(jobs: RewardJobData[], size: number): RewardBatchData[] {
  const cap = Math.max(1, Math.min(MAX_REWARD_BATCH, Math.floor(size)));
  const out: RewardBatchData[] = [];
  let cur: RewardJobData[] = [];
  for (const j of jobs) {
    const head = cur[0];
    if (head && (cur.length >= cap || head.job_id !== j.job_id || head.step !== j.step)) {
      out.push({ candidates: cur });
      cur = [];
    }
    cur.push(j);
  }
  if (cur.length > 0) out.push({ candidates: cur });
  return out;
}

/**
 * The BullMQ jobs that carry `jobs`: one plain job each when `batchSize` is 1 (ids
 * `<job>-<step>-<sample>`), else batch jobs (groupRewardBatches). `candidates[i]` are the
 * candidates of job `ids[i]`, in order; `enqueue` adds them all (idempotent ids).
 */
export function planRewardJobs(jobs: RewardJobData[], batchSize: number) {
  const batches = batchSize > 1 ? groupRewardBatches(jobs, batchSize) : null;
  return {
    batched: batches !== null,
    ids: batches ? batches.map(rewardBatchId) : jobs.map((d) => rewardJobId(d.job_id, d.step, d.sample_index)),
    candidates: batches ? batches.map((b) => b.candidates) : jobs.map((d) => [d]),
    enqueue: (queue: Queue, overrides: Partial<JobsOptions> = {}) => (batches ? enqueueRewardBatches(queue, batches, overrides) : enqueueRewardJobs(queue, jobs, overrides)),
  };
}

/** Enqueues batch jobs (idempotent ids, the candidates' job options, in slices of ENQUEUE_CHUNK candidates). */
export async function enqueueRewardBatches(queue: Queue, batches: RewardBatchData[], overrides: Partial<JobsOptions> = {}) {
  const out = [];
  const per = Math.max(1, Math.floor(ENQUEUE_CHUNK / Math.max(1, batches[0]?.candidates.length ?? 1)));
  for (let i = 0; i < batches.length; i += per) {
    const slice = batches.slice(i, i + per);
    out.push(
      ...(await queue.addBulk(
        slice.map((data) => ({ name: REWARD_BATCH_JOB, data, opts: { ...rewardJobOptions(data.candidates[0]!, overrides), jobId: rewardBatchId(data) } })),
      )),
    );
  }
  return out;
}
