import type { Job, Logger } from "@rlmesh/shared";
import type { JobStore } from "../job-store.js";
import { runJob } from "./job-runner.js";
import type { RunnerDeps } from "./runner-deps.js";

/**
 * Owns the jobs this api drives: starts submitted ones, stops cancelled ones, and on start-up
 * resumes every job left QUEUED or RUNNING (from its last completed step).
 */
export class Coordinator {
  private readonly running = new Map<string, { ac: AbortController; done: Promise<void> }>();

  constructor(
    private readonly deps: RunnerDeps,
    private readonly store: JobStore = deps.store,
    private readonly logger: Logger = deps.logger,
  ) {}

  start(job: Job): void {
    if (this.running.has(job.id)) return;
    const ac = new AbortController();
    this.deps.metrics?.jobsRunning.inc();
    const done = runJob(job, this.deps, ac.signal)
      .catch(async (err: unknown) => {
        if (ac.signal.aborted) return;
        const message = err instanceof Error ? err.message : String(err);
        this.logger.error("job failed", { job: job.id, err });
        await this.store.transition(job.id, "JOB_STATE_FAILED", message, { error: message }).catch(() => undefined);
      })
      .finally(() => {
        this.running.delete(job.id);
        this.deps.metrics?.jobsRunning.dec();
      });
    this.running.set(job.id, { ac, done });
  }

  /** Stops a job's in-flight work and removes its queued reward jobs. */
  async cancel(jobId: string): Promise<void> {
    const r = this.running.get(jobId);
    r?.ac.abort(Object.assign(new Error("job cancelled"), { name: "AbortError" }));
    await r?.done;
    const purged = await this.deps.rewards.purge(jobId);
    if (purged > 0) this.logger.info("removed queued reward jobs", { job: jobId, purged });
  }

  async resumeAll(): Promise<number> {
    let n = 0;
    for (const job of await this.store.list(undefined, 10_000)) {
      if (job.state === "JOB_STATE_QUEUED" || job.state === "JOB_STATE_RUNNING") {
        this.logger.info("resuming job", { job: job.id, step: job.step });
        this.start(job);
        n++;
      }
    }
    return n;
  }

  /** Stops driving every job (they stay RUNNING in Redis and resume on the next start). */
  async stop(): Promise<void> {
    for (const r of this.running.values()) r.ac.abort(Object.assign(new Error("api shutting down"), { name: "AbortError" }));
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  get active(): string[] {
    return [...this.running.keys()];
  }
}
