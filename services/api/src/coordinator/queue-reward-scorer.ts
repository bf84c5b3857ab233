import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger, SandboxLimits } from "@rlmesh/shared";
import { enqueueRewardJobs, rewardJobId, type RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import type { RewardResult } from "@rlmesh/shared/reward/reward-result";
import type { Candidate, RewardScorer, Score } from "./interfaces.js";

/** Longest wait for one candidate's final result (queueing included). */
export const REWARD_WAIT_TIMEOUT_MS = 600_000;

/** Proto limits (camelCase) to the executor's job payload limits (unset fields = executor default). */
function payloadLimits(l: SandboxLimits): RewardJobData["limits"] {
  return {
    timeout_ms_per_test: l.timeoutMsPerTest || undefined,
    total_timeout_ms: l.totalTimeoutMs || undefined,
    memory_mb: l.memoryMb || undefined,
    output_bytes: l.outputBytes || undefined,
  };
}

/**
 * Scores candidates through the BullMQ reward queue. Job ids are `<job>-<step>-<sample>`, so a
 * step re-run after an api restart finds the rewards already computed instead of adding new jobs.
 */
export class QueueRewardScorer implements RewardScorer {
  private readonly queue: Queue;
  private readonly events: QueueEvents;

  constructor(
    workerConnection: Redis,
    queueName: string,
    private readonly logger: Logger,
  ) {
    this.queue = new Queue(queueName, { connection: workerConnection.duplicate() });
    this.events = new QueueEvents(queueName, { connection: workerConnection.duplicate() });
    this.queue.on("error", (err) => logger.warn("reward queue error", { err: err.message }));
    this.events.on("error", (err) => logger.warn("reward queue events error", { err: err.message }));
  }

  async ready(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady()]);
  }

  async score(candidates: Candidate[], limits: SandboxLimits): Promise<Score[]> {
    const data: RewardJobData[] = candidates.map((c) => ({
      job_id: c.jobId,
      step: c.step,
      sample_index: c.sampleIndex,
      problem_id: c.row.task_id,
      response: c.response,
      tests: c.row.tests,
      limits: payloadLimits(limits),
    }));
    const jobs = await enqueueRewardJobs(this.queue, data);
    const results = await Promise.all(
      jobs.map(async (job) => {
        try {
          return (await job.waitUntilFinished(this.events, REWARD_WAIT_TIMEOUT_MS)) as RewardResult;
        } catch (err) {
          throw new Error(`reward job ${job.id} failed after its retries: ${(err as Error).message}`);
        }
      }),
    );
    return results.map((r) => ({ reward: r.reward, status: r.status }));
  }

  async purge(jobId: string): Promise<number> {
    const prefix = rewardJobId(jobId, 0, 0).replace(/-0-0$/, "-");
    let removed = 0;
    for (const j of await this.queue.getJobs(["waiting", "delayed", "prioritized", "paused", "waiting-children"])) {
      if (j?.id?.startsWith(prefix)) {
        await j.remove().then(
          () => removed++,
          () => undefined,
        );
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    await Promise.all([this.queue.close(), this.events.close()]);
  }
}
