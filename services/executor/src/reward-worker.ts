import { type ConnectionOptions, type Job, UnrecoverableError, WaitingError, Worker } from "bullmq";
import type { Logger } from "@rlmesh/shared";
import { MAX_REWARD_BATCH, REWARD_BATCH_JOB, type RewardBatchData, type RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { type RewardResult, infraFailureReason } from "@rlmesh/shared/reward/reward-result";
import { InvalidJobError, NotStartedError, SandboxError } from "./sandbox-error.js";
import type { ExecutorMetrics } from "./executor-metrics.js";

/**
 * How a dead executor's in-flight jobs are taken back within seconds: a short BullMQ lock that
 * the live worker renews every half lock (BullMQ's lockRenewTime), and a frequent stalled-job
 * check by every other (or the restarted) executor. A job whose executor died is back in wait
 * at most lock + 2 × interval after its last renewal (≤ 9 s by construction), instead of BullMQ's
 * 30 s + 30 s defaults. executor-takeover.test.ts measures it on these defaults, from the SIGKILL
 * to another executor starting the job: 5.9-6.0 s for a standing executor, 6.1-9.9 s for a new one
 * started after the kill (its start-up, when longer than the lock, sets the time; 2-core machine
 * at load 20-28; it allows 20 s). The cost is one PEXPIRE per
 * active job every 2.5 s and one stalled-check script per executor every 2 s: nothing next to a
 * sandbox run. A live executor whose event loop stalls for more than the lock (it does no
 * CPU work itself; the candidate runs in its container) would lose the job to another one, which
 * runs it again: the first completion is refused ("missing lock"), so it is still scored once.
 */
export const DEFAULT_LOCK_MS = 5000;
/** How often each executor looks for stalled jobs (see DEFAULT_LOCK_MS). */
export const DEFAULT_STALLED_INTERVAL_MS = 2000;
/**
 * How many times a job may be taken back from a dead executor before it fails as executor_lost.
 * A candidate cannot kill its executor (it runs in a sandbox), so a stall is the infrastructure's
 * doing, not the job's: with an executor SIGKILLed every 3 s (reward-queue-load.test.ts at the time) a limit
 * of 2 let 1 of 2 000 jobs fail that way at load ~25 (68 stalls in 37 kills). A job that somehow
 * wedges every executor it lands on still ends, after 6 executors.
 */
export const DEFAULT_MAX_STALLED_COUNT = 5;

/**
 * Job hash field: runs of the job that started on a sandbox and have not ended (incremented when
 * one starts, decremented when one ends in an error; a completed job is never read again). What
 * is left in it when the job is fetched again is how many of its stalls happened while it ran.
 */
export const RUNNING_FIELD = "rlmesh_running";

/** Job hash field: held stalls the policy has taken off the stalled counter so far (see FORGIVE_HELD_STALLS). */
export const FORGIVEN_FIELD = "rlmesh_forgiven";

/**
 * How many stalls the held-job stall policy forgives a job in all. A held stall and a death
 * before the run is recorded look the same (the job never ran, as far as Redis knows), so a job
 * that kills its executor when the processor starts would be forgiven forever without a bound;
 * with it such a job still fails as executor_lost, after maxStalledCount + this + 1 fetches
 * (reward-worker.test.ts: 9 at the defaults).
 */
export const DEFAULT_MAX_FORGIVEN_STALLS = 3;

/**
 * The held-job stall policy, on in every reward worker (every executor of a queue must record its
 * runs, or its running stalls would read as held ones to one that forgives; with prefetch 0 a job
 * can still wait for a sandbox being replaced): a stall of a job its executor held but had not
 * started (it waited for a sandbox) counts once, however many executors died holding it, up to a
 * bound (one HINCRBY per job records a run, awaited before the request goes to the sandbox). At each fetch, the stalls beyond its running ones (RUNNING_FIELD) and one held one
 * are taken off BullMQ's stalled counter, under the job's lock, as long as the job's forgiven
 * stalls (FORGIVEN_FIELD) stay within ARGV[4]; they are added to FORGIVEN_FIELD, so the job's
 * stall events are `stc + rlmesh_forgiven`. Returns how many were taken off (-1: the lock is not
 * this worker's any more).
 */
const FORGIVE_HELD_STALLS = `
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return -1 end
local stalled = tonumber(redis.call("HGET", KEYS[1], "stc") or "0") or 0
local running = tonumber(redis.call("HGET", KEYS[1], ARGV[2]) or "0") or 0
if running < 0 then running = 0 end
local held = stalled - running
if held <= 1 then return 0 end
local forgiven = tonumber(redis.call("HGET", KEYS[1], ARGV[3]) or "0") or 0
local budget = (tonumber(ARGV[4]) or 0) - forgiven
if budget <= 0 then return 0 end
local take = held - 1
if take > budget then take = budget end
redis.call("HSET", KEYS[1], "stc", stalled - take)
redis.call("HINCRBY", KEYS[1], ARGV[3], take)
return take`;

/** The two commands the policy sends on the worker's own connection (ioredis, which BullMQ wraps). */
interface PolicyClient {
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>;
  hincrby(key: string, field: string, by: number): Promise<number>;
}
const policyClient = (worker: Worker): Promise<PolicyClient> => worker.client as unknown as Promise<PolicyClient>;

export interface RewardWorkerOptions {
  connection: ConnectionOptions;
  /** @defaultValue "reward" */
  queueName: string;
  /** Jobs held at once: the sandbox pool size times (1 + the executor's prefetch per sandbox). */
  concurrency: number;
  /**
   * Scores one candidate; throws SandboxError on infrastructure failure, NotStartedError when
   * the executor gives a held job back (shutdown). Calls `onStart` once the candidate has a sandbox
   * and awaits it before sending the request.
   */
  score: (data: RewardJobData, onStart: () => Promise<void>) => Promise<RewardResult>;
  metrics?: ExecutorMetrics;
  logger?: Logger;
  /** BullMQ lock duration: a job whose worker stops renewing it is retried after this. @defaultValue DEFAULT_LOCK_MS */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. @defaultValue DEFAULT_STALLED_INTERVAL_MS */
  stalledIntervalMs?: number;
  /** Stalls before a job is failed for good. @defaultValue 2 */
  maxStalledCount?: number;
  /**
   * This executor's id, recorded by BullMQ on every job it takes (the job's `processedBy`), so a
   * reward can be traced to the executor that scored it.
   */
  name?: string;
}

/**
 * BullMQ worker of the reward queue. A candidate's own failure is a final result (the job's
 * return value). An infrastructure failure is never a result: a SandboxError (or any other
 * executor error) is thrown so BullMQ retries with the producer's backoff, and after the last
 * attempt the job is *failed* with the reason `sandbox_error: …`, so its producer sees "no
 * reward", not reward 0. A malformed job (InvalidJobError) fails at once (`invalid_job: …`).
 */
export function createRewardWorker(opts: RewardWorkerOptions): RewardWorker {
  const { metrics, logger } = opts;
  const processor = async (job: Job<RewardJobData | RewardBatchData, RewardResult | RewardResult[]>, token?: string): Promise<RewardResult | RewardResult[]> => {
    if (job.attemptsMade === 0 && job.processedOn) metrics?.queueWait.observe(Math.max(0, job.processedOn - job.timestamp) / 1000);
    const jobKey = worker.toKey(job.id!);
    if (token && (job.stalledCounter ?? 0) >= 2) {
      const client = await policyClient(worker);
      const forgiven = Number(
        await client.eval(
          FORGIVE_HELD_STALLS,
          2,
          jobKey,
          `${jobKey}:lock`,
          token,
          RUNNING_FIELD,
          FORGIVEN_FIELD,
          String(DEFAULT_MAX_FORGIVEN_STALLS),
        ),
      );
      if (forgiven > 0) logger?.info("held-job stalls not counted", { job: job.id, stalled: job.stalledCounter, forgiven });
    }
    let running = false;
    let recording: Promise<void> | undefined;
    // Once per job: a batch's candidates all call it, the first records the run.
    const onStart = () => (recording ??= recordRun());
    const recordRun = async () => {
      // Awaited (one round trip) before the request reaches the sandbox: a run is recorded
      // before it can kill anything, so its stalls count. The worker's connection has no retry
      // limit, so while Redis is down the run waits here (its sandbox taken) until it is back; if
      // the command fails instead, the run goes ahead and a stall in it reads as held (forgiven
      // at most DEFAULT_MAX_FORGIVEN_STALLS times).
      try {
        await (await policyClient(worker)).hincrby(jobKey, RUNNING_FIELD, 1);
        running = true;
      } catch (err) {
        logger?.warn("run count not recorded", { job: job.id, err });
      }
    };
    const started = process.hrtime.bigint();
    let result: RewardResult | RewardResult[];
    try {
      result = job.name === REWARD_BATCH_JOB ? await scoreBatch(job.data, opts.score, onStart) : await opts.score(job.data as RewardJobData, onStart);
    } catch (err) {
      if (running) {
        // Not awaited: if it is lost, the run counts as still running (its stalls count: the safe side).
        void policyClient(worker)
          .then((c) => c.hincrby(jobKey, RUNNING_FIELD, -1))
          .catch((err: unknown) => logger?.warn("run count not taken back", { job: job.id, err }));
      }
      if (err instanceof NotStartedError && token) {
        // Held, never started, and the executor is shutting down: back to the queue, no attempt counted.
        await job.moveToWait(token);
        logger?.info("held reward job given back", { job: job.id });
        throw new WaitingError();
      }
      const invalid = err instanceof InvalidJobError;
      const last = invalid || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const infra = err instanceof SandboxError;
      const message = (err as Error).message;
      logger?.warn("reward job failed", { job: job.id, attempt: job.attemptsMade + 1, last, err: message });
      if (!last) throw err;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const n = job.name === REWARD_BATCH_JOB ? batchSizeOf(job.data) : 1;
      metrics?.executions.inc({ status: "sandbox_error" }, n);
      metrics?.duration.observe({ status: "sandbox_error" }, seconds);
      if (invalid) throw new UnrecoverableError(infraFailureReason("invalid_job", message));
      throw new Error(
        infraFailureReason("sandbox_error", `${infra ? "sandbox" : "executor"} failed on all ${job.attemptsMade + 1} attempt(s): ${message}`),
      );
    }
    if (Array.isArray(result)) {
      for (const r of result) {
        metrics?.executions.inc({ status: r.status });
        metrics?.duration.observe({ status: r.status }, r.duration_ms / 1000);
      }
    } else {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics?.executions.inc({ status: result.status });
      metrics?.duration.observe({ status: result.status }, seconds);
    }
    return result;
  };
  const worker: RewardWorker = new Worker(opts.queueName, processor, {
    connection: opts.connection,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs ?? DEFAULT_LOCK_MS,
    stalledInterval: opts.stalledIntervalMs ?? DEFAULT_STALLED_INTERVAL_MS,
    maxStalledCount: opts.maxStalledCount ?? DEFAULT_MAX_STALLED_COUNT,
    ...(opts.name ? { name: opts.name } : {}),
    autorun: true,
  });
  worker.on("error", (err) => logger?.error("reward worker error", { err }));
  return worker;
}

/** The reward queue's worker: plain jobs (one candidate, one result) and batch jobs (a list of each). */
export type RewardWorker = Worker<RewardJobData | RewardBatchData, RewardResult | RewardResult[]>;

function batchSizeOf(data: unknown): number {
  const c = (data as Partial<RewardBatchData> | null)?.candidates;
  return Array.isArray(c) && c.length > 0 ? c.length : 1;
}

/**
 * Scores a batch job's candidates, all handed to the pool at once (it runs as many as it has
 * sandboxes; the rest wait in order), one result per candidate. A batch has one outcome: every
 * candidate scored, or the attempt fails as a whole once all its runs have ended (the retry
 * re-runs all of them; nothing was recorded). A malformed candidate fails the batch as invalid
 * (naming it); an infrastructure failure is retried like a plain job's; runs given back at
 * shutdown give the whole batch back (NotStartedError) even if some of it ran.
 */
async function scoreBatch(
  data: unknown,
  score: RewardWorkerOptions["score"],
  onStart: () => Promise<void>,
): Promise<RewardResult[]> {
  const candidates = (data as Partial<RewardBatchData> | null)?.candidates;
  if (!Array.isArray(candidates) || candidates.length === 0) throw new InvalidJobError("a batch job needs a non-empty candidates list");
  if (candidates.length > MAX_REWARD_BATCH) throw new InvalidJobError(`a batch job holds at most ${MAX_REWARD_BATCH} candidates, got ${candidates.length}`);
  const settled = await Promise.allSettled(
    candidates.map((c: unknown) =>
      typeof c === "object" && c !== null ? score(c as RewardJobData, onStart) : Promise.reject(new InvalidJobError("not an object")),
    ),
  );
  const failures = settled.flatMap((s, i) =>
    s.status === "rejected" ? [{ i, err: s.reason instanceof Error ? s.reason : new Error(String(s.reason)) }] : [],
  );
  if (failures.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<RewardResult>).value);
  const pick = failures.find((f) => f.err instanceof InvalidJobError) ?? failures.find((f) => !(f.err instanceof NotStartedError)) ?? failures[0]!;
  const message = `candidate ${pick.i} of ${candidates.length} in the batch: ${pick.err.message}`;
  if (pick.err instanceof InvalidJobError) throw new InvalidJobError(message);
  if (pick.err instanceof SandboxError) throw new SandboxError(message);
  if (pick.err instanceof NotStartedError) throw pick.err;
  throw new Error(message);
}

