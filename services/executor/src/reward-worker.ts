import { type ConnectionOptions, type Job, Worker } from "bullmq";
import type { Logger } from "@rlmesh/shared";
import type { RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { type RewardResult, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { InvalidJobError, SandboxError } from "./sandbox-error.js";
import type { ExecutorMetrics } from "./executor-metrics.js";
import { testCount } from "@rlmesh/shared/datasets/index";

export interface RewardWorkerOptions {
  connection: ConnectionOptions;
  /** @defaultValue "reward" */
  queueName: string;
  /** Jobs processed at once (match the sandbox pool size). */
  concurrency: number;
  /** Scores one candidate; throws SandboxError on infrastructure failure. */
  score: (data: RewardJobData) => Promise<RewardResult>;
  metrics?: ExecutorMetrics;
  logger?: Logger;
  /** BullMQ lock duration: a job whose worker stops renewing it is retried after this. @defaultValue 30000 */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. @defaultValue 30000 */
  stalledIntervalMs?: number;
  /** Stalls before a job is failed for good. @defaultValue 2 */
  maxStalledCount?: number;
}

/**
 * BullMQ worker of the reward queue. A candidate's own failure is a final result (the job's
 * return value); a SandboxError is thrown so BullMQ retries with the producer's backoff, and
 * on the last attempt it is recorded as a sandbox_error result with reward 0. A malformed job
 * (InvalidJobError) is recorded as sandbox_error at once.
 */
export function createRewardWorker(opts: RewardWorkerOptions): Worker<RewardJobData, RewardResult> {
  const { metrics, logger } = opts;
  const processor = async (job: Job<RewardJobData, RewardResult>): Promise<RewardResult> => {
    if (job.attemptsMade === 0 && job.processedOn) metrics?.queueWait.observe(Math.max(0, job.processedOn - job.timestamp) / 1000);
    const started = process.hrtime.bigint();
    let result: RewardResult;
    try {
      result = await opts.score(job.data);
    } catch (err) {
      // A malformed job fails the same way every time: record it at once.
      const last = err instanceof InvalidJobError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const infra = err instanceof SandboxError;
      logger?.warn("reward job failed", { job: job.id, attempt: job.attemptsMade + 1, last, err: (err as Error).message });
      if (!last) throw err;
      result = rewardResult({
        status: "sandbox_error",
        tests_run: 0,
        tests_passed: 0,
        tests_total: safeCount(job.data),
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
        reason:
          err instanceof InvalidJobError
            ? `invalid job: ${err.message}`
            : `${infra ? "sandbox" : "executor"} failed on every attempt: ${(err as Error).message}`,
      });
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics?.executions.inc({ status: result.status });
    metrics?.duration.observe({ status: result.status }, seconds);
    return result;
  };
  const worker = new Worker<RewardJobData, RewardResult>(opts.queueName, processor, {
    connection: opts.connection,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: opts.stalledIntervalMs ?? 30_000,
    maxStalledCount: opts.maxStalledCount ?? 2,
    autorun: true,
  });
  worker.on("error", (err) => logger?.error("reward worker error", { err }));
  return worker;
}

function safeCount(data: RewardJobData): number {
  try {
    return testCount(data.tests);
  } catch {
    return 0;
  }
}
