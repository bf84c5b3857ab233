import type { Job, Logger } from "@rlmesh/shared";
import type { JobStore } from "../job-store.js";
import { runJob } from "./job-runner.js";
import type { RunnerDeps } from "./runner-deps.js";

/** What drives one job (runJob; a seam for tests). */
export type JobRun = (job: Job, deps: RunnerDeps, signal: AbortSignal) => Promise<void>;

/**
 * Owns the jobs this api drives: starts submitted ones, stops cancelled ones, and on start-up
 * resumes every job left QUEUED or RUNNING (from its last completed step).
 *
 * One job runs at a time: the mesh has one learner, which trains one job's policy, and its
 * rollout workers serve that policy. A job submitted while another runs stays QUEUED (with an
 * event saying behind which job) and starts when the jobs before it end, in submission order.
 */
export class Coordinator {
  private readonly running = new Map<string, { ac: AbortController; done: Promise<void> }>();
  /** Jobs waiting for the running one to end, oldest first. */
  private readonly waiting: Job[] = [];
  private stopped = false;

  constructor(
    private readonly deps: RunnerDeps,
    private readonly store: JobStore = deps.store,
    private readonly logger: Logger = deps.logger,
    private readonly run: JobRun = runJob,
  ) {}

  start(job: Job): void {
    if (this.stopped || this.running.has(job.id) || this.waiting.some((j) => j.id === job.id)) return;
    const ahead = [...this.running.keys()][0];
    if (ahead === undefined) {
      this.launch(job);
      return;
    }
    this.waiting.push(job);
    const place = this.waiting.length;
    this.logger.info("job queued behind the running one", { job: job.id, running: ahead, place });
    void this.store
      .appendEvent(job.id, {
        log: {
          level: "info",
          message: `queued: job ${ahead} is running and the mesh runs one job at a time; this job starts when ${place === 1 ? "it ends" : `it and ${place - 1} job(s) before this one end`}`,
        },
      })
      .catch(() => undefined);
  }

  private launch(job: Job): void {
    const ac = new AbortController();
    this.deps.metrics?.jobsRunning.inc();
    const done = this.run(job, this.deps, ac.signal)
      .catch(async (err: unknown) => {
        if (ac.signal.aborted) return;
        const message = err instanceof Error ? err.message : String(err);
        this.logger.error("job failed", { job: job.id, err });
        await this.store.transition(job.id, "JOB_STATE_FAILED", message, { error: message }).catch(() => undefined);
      })
      .finally(() => {
        this.running.delete(job.id);
        this.deps.metrics?.jobsRunning.dec();
        void this.startNext();
      });
    this.running.set(job.id, { ac, done });
  }

  /** Starts the oldest waiting job that is still to run (a cancelled one is skipped). */
  private async startNext(): Promise<void> {
    while (!this.stopped && this.running.size === 0) {
      const next = this.waiting.shift();
      if (!next) return;
      const now = await this.store.get(next.id).catch(() => next);
      if (now && (now.state === "JOB_STATE_QUEUED" || now.state === "JOB_STATE_RUNNING")) {
        this.launch(now);
        return;
      }
    }
  }

  /** Stops a job's in-flight work (or takes it out of the queue) and removes its queued reward jobs. */
  async cancel(jobId: string): Promise<void> {
    const w = this.waiting.findIndex((j) => j.id === jobId);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.get(jobId);
    r?.ac.abort(Object.assign(new Error("job cancelled"), { name: "AbortError" }));
    await r?.done;
    const purged = await this.deps.rewards.purge(jobId);
    if (purged > 0) this.logger.info("removed queued reward jobs", { job: jobId, purged });
  }

  /** The jobs left RUNNING first (the one the learner trained), then the QUEUED ones in submission order. */
  async resumeAll(): Promise<number> {
    const jobs = (await this.store.list(undefined, 10_000))
      .filter((j) => j.state === "JOB_STATE_QUEUED" || j.state === "JOB_STATE_RUNNING")
      .sort((a, b) => rank(a) - rank(b) || Number(a.createdAtMs) - Number(b.createdAtMs));
    for (const job of jobs) {
      this.logger.info("resuming job", { job: job.id, step: job.step, state: job.state });
      this.start(job);
    }
    return jobs.length;
  }

  /** Stops driving every job (they stay RUNNING or QUEUED in Redis and resume on the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.waiting.length = 0;
    for (const r of this.running.values()) r.ac.abort(Object.assign(new Error("api shutting down"), { name: "AbortError" }));
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  get active(): string[] {
    return [...this.running.keys()];
  }

  /** Jobs waiting for the running one, oldest first. */
  get queued(): string[] {
    return this.waiting.map((j) => j.id);
  }
}

const rank = (j: Job) => (j.state === "JOB_STATE_RUNNING" ? 0 : 1);
