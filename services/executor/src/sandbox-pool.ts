import type { Logger } from "@rlmesh/shared";
import type { SandboxRequest, SandboxResponse } from "./sandbox-protocol.js";
import { NotStartedError, SandboxError } from "./sandbox-error.js";

/** What the pool needs from a sandbox (DockerSandbox, or a fake in tests). */
export interface Sandbox {
  readonly id: string;
  readonly healthy: boolean;
  run(req: SandboxRequest, watchdogMs: number): Promise<SandboxResponse>;
  destroy(): Promise<void>;
}

export interface SandboxPoolOptions {
  /** Warm sandboxes kept. */
  size: number;
  /** Starts one sandbox. */
  create: () => Promise<Sandbox>;
  /**
   * How long runs may wait with no sandbox freed (offered back, or a replacement started): past
   * it every waiting run fails with SandboxError. Progress resets it, so a long queue (a batch job
   * puts all its candidates in at once) waits as long as the sandboxes keep finishing runs; a pool
   * whose sandboxes are all stuck or cannot be replaced fails its waiters. @defaultValue 60000
   */
  acquireTimeoutMs?: number;
  /** Delay before retrying a failed start. @defaultValue 1000 */
  restartDelayMs?: number;
  logger?: Logger;
  /** Called whenever the number of live or busy sandboxes changes. */
  onChange?: (live: number, busy: number) => void;
}

/**
 * A warm pool of sandboxes. A sandbox serves one candidate at a time; one that failed in any
 * way (watchdog, dead stream, bad frame) is destroyed and replaced in the background.
 */
export class SandboxPool {
  private readonly idle: Sandbox[] = [];
  /** When each idle sandbox became idle (hrtime ns). */
  private readonly idleSince = new Map<Sandbox, bigint>();
  /**
   * Runs started, and the total time their sandbox sat idle before (since it was offered back
   * or started): with jobs always waiting this is ~0; an executor that fetches its next job only
   * once a sandbox is free shows its queue round trip here.
   */
  readonly stats = { runs: 0, idleWaitMs: 0 };
  private readonly members = new Set<Sandbox>();
  private readonly waiters: { resolve: (s: Sandbox) => void; reject: (e: Error) => void }[] = [];
  /** Armed while runs wait: fires when no sandbox was freed for acquireTimeoutMs (see SandboxPoolOptions). */
  private stallTimer: NodeJS.Timeout | undefined;
  private live = 0;
  private busy = 0;
  private starting = 0;
  private closed = false;
  /** Set by returnWaiters: a run that finds no idle sandbox is given back instead of waiting. */
  private returning = false;
  private readonly acquireTimeoutMs: number;
  private readonly restartDelayMs: number;

  constructor(private readonly opts: SandboxPoolOptions) {
    this.acquireTimeoutMs = opts.acquireTimeoutMs ?? 60_000;
    this.restartDelayMs = opts.restartDelayMs ?? 1000;
  }

  /** Zeroes `stats`; sandboxes idle now count as idle from now (a bench's timed part starts). */
  resetStats(): void {
    this.stats.runs = 0;
    this.stats.idleWaitMs = 0;
    const now = process.hrtime.bigint();
    for (const s of this.idle) this.idleSince.set(s, now);
  }

  get size(): number {
    return this.live;
  }

  get busyCount(): number {
    return this.busy;
  }

  /** Ids of the live sandboxes, sorted (a replaced sandbox shows up as a changed id). */
  ids(): string[] {
    return [...this.members].map((s) => s.id).sort();
  }

  /** Starts all sandboxes; throws if not even one could start (e.g. Docker or the image is missing). */
  async start(): Promise<void> {
    const results = await Promise.allSettled(Array.from({ length: this.opts.size }, () => this.opts.create()));
    const errors: unknown[] = [];
    for (const r of results) {
      if (r.status === "fulfilled") {
        this.live++;
        this.members.add(r.value);
        this.offer(r.value);
      } else {
        errors.push(r.reason);
        this.replaceLater();
      }
    }
    this.changed();
    if (this.live === 0 && errors.length > 0) {
      await this.close();
      throw errors[0] instanceof Error ? errors[0] : new SandboxError(String(errors[0]));
    }
  }

  /**
   * Runs one request on a free sandbox. SandboxError when the infrastructure failed;
   * NotStartedError when the pool gave the run back (returnWaiters) before a sandbox was free.
   * `onStart` is called once a sandbox is taken for it, and awaited before the request is sent.
   */
  async run(req: SandboxRequest, watchdogMs: number, onStart?: () => unknown): Promise<SandboxResponse> {
    const sandbox = await this.acquire();
    this.stats.runs++;
    this.busy++;
    this.changed();
    try {
      await onStart?.();
      return await sandbox.run(req, watchdogMs);
    } finally {
      this.busy--;
      if (sandbox.healthy && !this.closed) {
        this.offer(sandbox);
      } else {
        this.retire(sandbox);
      }
      this.changed();
    }
  }

  private acquire(): Promise<Sandbox> {
    if (this.closed) return Promise.reject(new SandboxError("sandbox pool is closed"));
    const s = this.idle.pop();
    if (s) {
      this.stats.idleWaitMs += Number(process.hrtime.bigint() - (this.idleSince.get(s) ?? process.hrtime.bigint())) / 1e6;
      this.idleSince.delete(s);
      return Promise.resolve(s);
    }
    if (this.returning) return Promise.reject(new NotStartedError("executor shutting down: no sandbox free, run given back"));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.stallTimer) this.armStallTimer();
    });
  }

  /** (Re)starts the no-progress timer while runs wait; stops it when none does. */
  private armStallTimer(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (this.waiters.length === 0) return;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      const n = this.waiters.length;
      this.rejectWaiters(new SandboxError(`no sandbox freed within ${this.acquireTimeoutMs} ms while ${n} run(s) waited (${this.live} live)`));
    }, this.acquireTimeoutMs);
  }

  private offer(s: Sandbox): void {
    const w = this.waiters.shift();
    if (w) {
      this.armStallTimer();
      w.resolve(s);
    } else {
      this.idle.push(s);
      this.idleSince.set(s, process.hrtime.bigint());
    }
  }

  private retire(s: Sandbox): void {
    this.live--;
    this.members.delete(s);
    s.destroy().catch((err: unknown) => this.opts.logger?.warn("sandbox destroy failed", { id: s.id, err }));
    if (!this.closed) {
      this.opts.logger?.info("replacing sandbox", { id: s.id.slice(0, 12) });
      this.replace();
    }
  }

  private replace(): void {
    this.starting++;
    this.opts.create().then(
      (s) => {
        this.starting--;
        if (this.closed) {
          void s.destroy();
          return;
        }
        this.live++;
        this.members.add(s);
        this.offer(s);
        this.changed();
      },
      (err: unknown) => {
        this.starting--;
        this.opts.logger?.error("sandbox start failed", { err });
        this.replaceLater();
      },
    );
  }

  private replaceLater(): void {
    if (this.closed) return;
    setTimeout(() => {
      if (!this.closed) this.replace();
    }, this.restartDelayMs).unref();
  }

  private changed(): void {
    this.opts.onChange?.(this.live, this.busy);
  }

  /**
   * Gives back every run waiting for a sandbox (NotStartedError), and from now on every run that
   * finds none idle: an executor shutting down returns its prefetched jobs to the queue instead
   * of running them first. Runs already on a sandbox go on.
   */
  returnWaiters(): void {
    this.returning = true;
    this.rejectWaiters(new NotStartedError("executor shutting down: run given back before it started"));
  }

  private rejectWaiters(err: Error): void {
    const waiting = this.waiters.splice(0);
    this.armStallTimer();
    for (const w of waiting) w.reject(err);
  }

  /** Destroys every sandbox; pending runs fail with SandboxError. */
  async close(): Promise<void> {
    this.closed = true;
    this.rejectWaiters(new SandboxError("sandbox pool is closed"));
    const idle = this.idle.splice(0);
    this.idleSince.clear();
    this.live -= idle.length;
    for (const s of idle) this.members.delete(s);
    await Promise.allSettled(idle.map((s) => s.destroy()));
    // Busy ones are destroyed when their run returns (closed pool retires them).
    this.changed();
  }
}
