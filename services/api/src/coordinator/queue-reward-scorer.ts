import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger, SandboxLimits } from "@rlmesh/shared";
import { checkRewardBatchSize, rewardJobId, type RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { outcomeInfraFailure, RewardWaiter } from "@rlmesh/shared/reward/reward-waiter";
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
 * Waiting scales with the step: one RewardWaiter (one listener pair on one QueueEvents, a map of
 * pending ids, a periodic read-back for events missed while Redis was away), not a listener per job.
 */
export class QueueRewardScorer implements RewardScorer {
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly waiter: RewardWaiter;
  private readonly connections: Redis[];
  /** Candidates per reward job (RLMESH_REWARD_BATCH): 1 = one job each, more = batch jobs. */
  readonly batchSize: number;

  constructor(
    workerConnection: Redis,
    queueName: string,
    private readonly logger: Logger,
    opts: { batchSize?: number } = {},
  ) {
    this.batchSize = checkRewardBatchSize(opts.batchSize ?? 1);
    // BullMQ does not close connections it is given: these two are the scorer's to close.
    this.connections = [workerConnection.duplicate(), workerConnection.duplicate()];
    this.queue = new Queue(queueName, { connection: this.connections[0]! });
    this.events = new QueueEvents(queueName, { connection: this.connections[1]! });
    this.queue.on("error", (err) => logger.warn("reward queue error", { err: err.message }));
    this.events.on("error", (err) => logger.warn("reward queue events error", { err: err.message }));
    this.waiter = new RewardWaiter(this.queue, this.events, { logger });
  }

  async ready(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady()]);
  }

  async score(candidates: Candidate[], limits: SandboxLimits, signal?: AbortSignal): Promise<Score[]> {
    const data: RewardJobData[] = candidates.map((c) => ({
      job_id: c.jobId,
      step: c.step,
      sample_index: c.sampleIndex,
      problem_id: c.row.task_id,
      response: c.response,
      tests: c.row.tests,
      limits: payloadLimits(limits),
    }));
    const ids = data.map((d) => rewardJobId(d.job_id, d.step, d.sample_index));
    const outcomes = await this.waiter.waitForCandidates(data, this.batchSize, REWARD_WAIT_TIMEOUT_MS, signal ? { signal } : {});
    signal?.throwIfAborted();
    // A job gone from Redis (removed, data lost) is re-enqueued by a retry of the step.
    const missing = outcomes.flatMap((o, i) => (o.state === "missing" ? [`${ids[i]}: ${o.reason}`] : []));
    if (missing.length > 0) {
      throw new Error(`${missing.length} of ${ids.length} reward job(s) vanished from Redis (e.g. ${missing.slice(0, 3).join("; ")})`);
    }
    // A failed job (its retries spent, or its executor lost too often) and a job with no result
    // within the wait are "no reward": the caller drops the sample, never scores it 0.
    return outcomes.map((o): Score => {
      const failure = outcomeInfraFailure(o);
      if (o.state === "completed") return failure ? { reward: null, status: failure, reason: o.result.reason } : { reward: o.result.reward, status: o.result.status };
      return { reward: null, status: failure ?? "infra_timeout", reason: o.reason };
    });
  }

  /** Workers (executors) connected to the reward queue: BullMQ names their connections. */
  async executors(): Promise<number> {
    return this.queue.getWorkersCount();
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
    this.waiter.close();
    await Promise.all([this.queue.close(), this.events.close()]);
    for (const c of this.connections) c.disconnect();
  }
}
