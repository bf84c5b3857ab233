import type { JobsOptions, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../logger.js";
import { type RewardJobData, planRewardJobs } from "./reward-jobs.js";
import { classifyFailedReason, REWARD_STATUSES, type InfraFailure, type RewardResult } from "./reward-result.js";

/** How one reward job ended, as seen by its producer. */

/** The reason prefix of the outcome a job gets when its enqueue failed (no result: the caller retries). */
export const NOT_ENQUEUED = "not enqueued";

/** True for the outcome of a job whose enqueue failed, which a retried enqueue settles again. */
export function isNotEnqueued(o: JobOutcome): boolean {
  return o.state === "failed" && o.reason.startsWith(`${NOT_ENQUEUED}:`);
}
export type RewardOutcome =
  | { state: "completed"; result: RewardResult }
  /** BullMQ failed the job for good (its retries spent, or stalled too often). */
  | { state: "failed"; reason: string }
  /** The job is gone from Redis while it was awaited (removed, e.g. by a cancel, or data lost). */
  | { state: "missing"; reason: string }
  | { state: "timeout"; reason: string };

/**
 * How one BullMQ job ended, as the waiter sees it: a batch job (reward-jobs' REWARD_BATCH_JOB)
 * completes with one result per candidate. waitFor and waitForCandidates turn it into RewardOutcomes.
 */
export type JobOutcome = RewardOutcome | { state: "batch"; results: RewardResult[] };

/**
 * Which infrastructure failure left a reward job without a reward, or null when it was scored: a
 * failed job (retries spent, executor lost), no result in time or gone, and a spent sandbox that
 * an older executor recorded as a sandbox_error result. Such a sample is never scored 0.
 */
export function outcomeInfraFailure(o: RewardOutcome): InfraFailure | null {
  if (o.state === "completed") return o.result.status === "sandbox_error" ? "sandbox_error" : null;
  return o.state === "failed" ? classifyFailedReason(o.reason) : "infra_timeout";
}

/** Default period of the reconciliation sweep. */
export const DEFAULT_RECONCILE_INTERVAL_MS = 5000;
/** Job hashes read per pipeline in one sweep. */
export const PROBE_BATCH = 1000;

export interface RewardWaiterOptions {
  /** How often pending jobs are read back from Redis (events missed while disconnected, deadlines). @defaultValue 5000 */
  reconcileIntervalMs?: number;
  logger?: Logger;
  /** Called once per awaited id when it settles (latency measurements). */
  onSettled?: (jobId: string, outcome: JobOutcome) => void;
}

export interface RewardWaiterStats {
  /** Jobs settled by a `completed`/`failed` event. */
  byEvent: number;
  /** Jobs settled by reading the job back from Redis (already finished, or an event missed). */
  byProbe: number;
  timedOut: number;
  /** `completed` events for a job that was not (or no longer) awaited: another producer's, or a repeat. */
  unawaitedEvents: number;
  sweeps: number;
  /** Sweeps that failed (Redis unreachable); the next one tries again. */
  sweepErrors: number;
}

interface Pending {
  settle: ((o: JobOutcome) => void)[];
  deadline: number;
  /** Armed once the job has been enqueued: before that, a missing job hash is expected. */
  armed: boolean;
  /** When it was last read back (or armed). */
  probedAt: number;
}

/**
 * Waits for many reward jobs at once without a listener per job: one `completed` and one
 * `failed` listener on a QueueEvents dispatch to a map of pending job ids. QueueEvents can miss
 * events (a Redis restart, a reconnect, a trimmed stream), so a periodic sweep reads every job
 * pending for longer than the sweep interval back from Redis (a pipelined HMGET of the job
 * hash's finishedOn/returnvalue/failedReason) and settles those that finished. A job already
 * finished before it was awaited (a retried step re-adding the same idempotent id) is settled
 * by the read right after enqueueing. Each awaited id settles exactly once.
 */
export class RewardWaiter {
  private readonly pending = new Map<string, Pending>();
  private readonly timer: NodeJS.Timeout;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  readonly stats: RewardWaiterStats = { byEvent: 0, byProbe: 0, timedOut: 0, unawaitedEvents: 0, sweeps: 0, sweepErrors: 0 };
  private readonly intervalMs: number;

  private readonly onCompleted = (e: { jobId: string; returnvalue: unknown }) => {
    if (!this.pending.has(e.jobId)) {
      this.stats.unawaitedEvents++;
      return;
    }
    this.stats.byEvent++;
    this.settle(e.jobId, completedOutcome(e.returnvalue));
  };

  // BullMQ 5 emits `failed` only when a job fails for good (a retry emits `delayed`/`waiting`).
  private readonly onFailed = (e: { jobId: string; failedReason: string }) => {
    if (!this.pending.has(e.jobId)) return;
    this.stats.byEvent++;
    this.settle(e.jobId, { state: "failed", reason: e.failedReason });
  };

  constructor(
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly opts: RewardWaiterOptions = {},
  ) {
    this.intervalMs = opts.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS;
    events.on("completed", this.onCompleted);
    events.on("failed", this.onFailed);
    this.timer = setInterval(() => void this.sweep(), this.intervalMs);
    this.timer.unref();
  }

  /** Jobs awaited now. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Registers `ids`, runs `enqueue` (which adds those jobs), reads back the ones already
   * finished, and resolves with one outcome per id, in order, once every one has settled.
   * Register-then-enqueue means no event can slip between the two.
   */
  async waitFor(ids: string[], timeoutMs: number, enqueue: () => Promise<unknown>, signal?: AbortSignal): Promise<RewardOutcome[]> {
    return (await this.waitForJobs(ids, timeoutMs, enqueue, signal)).map((o, i) => candidateOutcomes(o, 1, false, ids[i]!)[0]!);
  }

  /**
   * Enqueues candidates (planRewardJobs: a job each when `batchSize` is 1, else batch jobs of at
   * most that many) and resolves with one outcome per candidate, in order: a completed batch gives
   * each candidate its own result; a job that failed, vanished or timed out gives every candidate of
   * it that outcome (none of them has a reward). A result of the wrong shape or count is failed,
   * never guessed at.
   */
  async waitForCandidates(
    jobs: RewardJobData[],
    batchSize: number,
    timeoutMs: number,
    opts: { signal?: AbortSignal; jobOptions?: Partial<JobsOptions> } = {},
  ): Promise<RewardOutcome[]> {
    const plan = planRewardJobs(jobs, batchSize);
    const outcomes = await this.waitForJobs(plan.ids, timeoutMs, () => plan.enqueue(this.queue, opts.jobOptions), opts.signal);
    return plan.candidates.flatMap((cands, i) => candidateOutcomes(outcomes[i]!, cands.length, plan.batched, plan.ids[i]!));
  }

  /** waitFor's core: one JobOutcome per id (a batch job's results unsplit). */
  async waitForJobs(ids: string[], timeoutMs: number, enqueue: () => Promise<unknown>, signal?: AbortSignal): Promise<JobOutcome[]> {
    if (this.closed) throw new Error("reward waiter is closed");
    signal?.throwIfAborted();
    const deadline = Date.now() + timeoutMs;
    const mine: { id: string; resolve: (o: JobOutcome) => void }[] = [];
    const waits = ids.map(
      (id) =>
        new Promise<JobOutcome>((resolve) => {
          mine.push({ id, resolve });
          const p = this.pending.get(id);
          if (p) {
            p.settle.push(resolve);
            p.deadline = Math.max(p.deadline, deadline);
          } else this.pending.set(id, { settle: [resolve], deadline, armed: false, probedAt: 0 });
        }),
    );
    // An aborted wait stops waiting (the jobs themselves are the caller's to remove).
    const onAbort = () => {
      for (const { id, resolve } of mine) {
        const p = this.pending.get(id);
        if (!p) continue;
        p.settle = p.settle.filter((s) => s !== resolve);
        if (p.settle.length === 0) this.pending.delete(id);
        resolve({ state: "timeout", reason: "the wait was aborted" });
      }
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.events.waitUntilReady();
      await enqueue();
    } catch (err) {
      for (const id of ids) this.settle(id, { state: "failed", reason: `${NOT_ENQUEUED}: ${(err as Error).message}` });
      throw err;
    }
    const now = Date.now();
    for (const id of ids) {
      const p = this.pending.get(id);
      if (p) {
        p.armed = true;
        p.probedAt = now;
      }
    }
    await this.probe(ids).catch((err: Error) => {
      // Redis went away right after the enqueue: the periodic sweep reads them back later.
      this.opts.logger?.warn("reading back reward jobs failed; the sweep retries", { err: err.message });
    });
    try {
      return await Promise.all(waits);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Settles every pending wait with a timeout outcome and stops listening. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.events.off("completed", this.onCompleted);
    this.events.off("failed", this.onFailed);
    for (const id of [...this.pending.keys()]) this.settle(id, { state: "timeout", reason: "the reward waiter was closed" });
  }

  /** One reconciliation pass now (the timer calls it; tests may too). Never runs twice at once. */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    const now = Date.now();
    for (const [id, p] of [...this.pending]) {
      if (now > p.deadline) {
        this.stats.timedOut++;
        this.settle(id, { state: "timeout", reason: `no result within the wait's deadline (${Math.round((now - p.deadline) / 1000)} s past)` });
      }
    }
    const due = [...this.pending].filter(([, p]) => p.armed && now - p.probedAt >= this.intervalMs).map(([id]) => id);
    if (due.length === 0) return;
    this.stats.sweeps++;
    try {
      await this.probe(due);
    } catch (err) {
      this.stats.sweepErrors++;
      this.opts.logger?.warn("reward job sweep failed; retrying next interval", { err: (err as Error).message, pending: this.pending.size });
    }
  }

  /** Reads the jobs' hashes back and settles those that finished (or vanished). */
  private async probe(ids: string[]): Promise<void> {
    const client = (await this.queue.client) as unknown as Redis;
    for (let i = 0; i < ids.length; i += PROBE_BATCH) {
      const batch = ids.slice(i, i + PROBE_BATCH).filter((id) => this.pending.get(id)?.armed);
      if (batch.length === 0) continue;
      const pipe = client.pipeline();
      for (const id of batch) pipe.hmget(this.queue.toKey(id), "timestamp", "finishedOn", "returnvalue", "failedReason");
      const replies = (await pipe.exec()) ?? [];
      const now = Date.now();
      batch.forEach((id, j) => {
        const [err, fields] = replies[j] ?? [new Error("no reply"), null];
        if (err) throw err;
        const [timestamp, finishedOn, returnvalue, failedReason] = fields as (string | null)[];
        const p = this.pending.get(id);
        if (!p) return;
        p.probedAt = now;
        if (timestamp === null || timestamp === undefined) {
          this.stats.byProbe++;
          this.settle(id, { state: "missing", reason: `reward job ${id} no longer exists in Redis` });
        } else if (finishedOn && returnvalue !== null && returnvalue !== undefined) {
          this.stats.byProbe++;
          this.settle(id, completedOutcome(returnvalue));
        } else if (finishedOn && failedReason !== null && failedReason !== undefined) {
          this.stats.byProbe++;
          this.settle(id, { state: "failed", reason: failedReason });
        }
      });
    }
  }

  private settle(id: string, outcome: JobOutcome): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.opts.onSettled?.(id, outcome);
    for (const s of p.settle) s(outcome);
  }
}

/** The outcomes of a job's `n` candidates: a batch's results split, anything else shared (a result of the wrong shape fails them all). */
function candidateOutcomes(o: JobOutcome, n: number, batched: boolean, id: string): RewardOutcome[] {
  if (batched && o.state === "batch" && o.results.length === n) return o.results.map((result) => ({ state: "completed", result }));
  if (!batched && o.state === "completed") return [o];
  const same: RewardOutcome =
    o.state === "batch" || o.state === "completed"
      ? { state: "failed", reason: `unreadable result: job ${id} of ${n} candidate(s) returned ${o.state === "batch" ? `${o.results.length} results` : "a single result"}` }
      : o;
  return Array.from({ length: n }, () => same);
}

function completedOutcome(returnvalue: unknown): JobOutcome {
  const value = typeof returnvalue === "string" ? parseJson(returnvalue) : returnvalue;
  if (Array.isArray(value)) {
    const results = value.map(parseRewardResult);
    if (results.every((r): r is RewardResult => r !== undefined)) return { state: "batch", results };
  } else {
    const r = parseRewardResult(value);
    if (r) return { state: "completed", result: r };
  }
  return { state: "failed", reason: `unreadable result: ${String(returnvalue).slice(0, 200)}` };
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** A job's return value (as BullMQ stores or emits it) as a RewardResult; undefined if it is not one. */
export function parseRewardResult(v: unknown): RewardResult | undefined {
  const o = typeof v === "string" ? parseJson(v) : v;
  if (typeof o !== "object" || o === null) return undefined;
  const r = o as RewardResult;
  return (REWARD_STATUSES as readonly string[]).includes(r.status) && (r.reward === 0 || r.reward === 1) ? r : undefined;
}
