import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import type { Redis } from "ioredis";
import { Queue } from "bullmq";
import type { Registry } from "prom-client";
import { type Logger, createRedis } from "@rlmesh/shared";
import { type ExecutorMetrics, createExecutorMetrics } from "./executor-metrics.js";
import { DEFAULT_REWARD_QUEUE } from "@rlmesh/shared/reward/queue-names";
import { type RewardWorker, createRewardWorker } from "./reward-worker.js";
import { SandboxPool } from "./sandbox-pool.js";
import { type SandboxBackend, type SandboxBackendName, openSandboxBackend, sandboxBackendFromEnv } from "./sandbox-backend.js";
import { type ContainerLimits, DEFAULT_CONTAINER_LIMITS, DEFAULT_SANDBOX_LIMITS, MAX_SANDBOX_LIMITS, type SandboxLimits } from "./sandbox-limits.js";
import { DEFAULT_WATCHDOG_GRACE_MS } from "./docker-sandbox.js";
import { SANDBOX_IMAGE } from "./sandbox-image.js";
import { scoreCandidate } from "./score-candidate.js";

export interface ExecutorOptions {
  redisUrl: string;
  /** @defaultValue "reward" */
  queueName?: string;
  /** Candidates at once and warm sandboxes. @defaultValue 2 */
  concurrency?: number;
  /**
   * Reward jobs held per warm sandbox beyond the one it runs, waiting for a sandbox (BullMQ worker
   * concurrency = concurrency × (1 + prefetch)), so a freed sandbox takes its next job at once
   * instead of waiting for the Redis round trip that completes the last one and fetches the next.
   * Their locks are renewed like the running ones; if the executor dies they stall and are
   * retried like any other job (a stall while held counts once; reward-worker.ts), and on shutdown
   * they go back to the queue unstarted. 0: a job is fetched only when a sandbox is free. @defaultValue DEFAULT_PREFETCH
   */
  prefetch?: number;
  /** Owner label of the sandboxes. @defaultValue `<host>-<pid>-<random>` */
  executorId?: string;
  image?: string;
  containerLimits?: ContainerLimits;
  defaultLimits?: SandboxLimits;
  /** Registry for the executor's metrics (none: no metrics). */
  registry?: Registry;
  logger?: Logger;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  docker?: Docker;
  /** Called with the reward worker as soon as it exists, before it can emit any job event (load-test evidence). */
  onWorker?: (worker: RewardWorker) => void;
  /** Which sandboxes: Docker containers or bwrap. @defaultValue RLMESH_SANDBOX_BACKEND, else "docker" */
  backend?: SandboxBackendName;
  /** bwrap: host uid of the sandboxes when the executor runs as root. */
  bwrapHostUid?: number;
  /** bwrap: a delegated cgroup v2 directory to create sandbox cgroups under. */
  cgroupParent?: string;
}

/**
 * Jobs an executor holds per sandbox beyond the one it runs, by default (see
 * ExecutorOptions.prefetch): one. It takes the Redis round trip (complete the last job, fetch the
 * next) off the time a sandbox waits for work: `bench sandbox --prefetch 0,1 --rounds 2
 * --exclude-tasks 123` (same run, load 20-25) measured sandbox idle 7.2 -> 1.6 ms (docker) and
 * 6.7 -> 2.1 ms (bwrap) per candidate, and 3.46x -> 3.79x / 3.59x -> 3.94x bare python3's rate.
 * It was opt-in while a killed executor's held jobs stalled like its running ones and could reach
 * maxStalledCount (executor_lost) without ever running; now deaths while held count as one stall
 * (the held-job stall policy, reward-worker.ts, up to DEFAULT_MAX_FORGIVEN_STALLS per job) and
 * SIGTERM gives held jobs back unstarted. reward-queue-load.test.ts (an executor SIGKILLed every
 * 3 s) prints the raw stall counts (stc + rlmesh_forgiven); one run each, nice 10, load 7-9:
 * prefetch 1: 28 stalled jobs in 8 kills (3.5 per kill), none forgiven; prefetch 0: 16 in 9
 * (1.78 per kill); at load 15-18: 92 in 27 (3.41, 1 forgiven) against 46 in 24 (1.92).
 */
export const DEFAULT_PREFETCH = 1;

/**
 * How long held runs may wait with no sandbox freed (SandboxPoolOptions.acquireTimeoutMs: any
 * sandbox finishing a run, or a replacement starting, restarts it): the longest watchdog a job can
 * ask for, plus a minute for replacing a failed sandbox. A queue of any length (prefetched jobs,
 * the candidates of batch jobs) waits as long as runs keep ending; a pool that cannot free or
 * replace a sandbox for that long fails its waiters as SandboxError (retried, never a reward).
 */
export function acquireTimeoutMs(): number {
  return MAX_SANDBOX_LIMITS.total_timeout_ms + DEFAULT_WATCHDOG_GRACE_MS + 60_000;
}

export interface RunningExecutor {
  pool: SandboxPool;
  backend: SandboxBackend;
  worker: RewardWorker;
  metrics?: ExecutorMetrics;
  /**
   * Graceful: stops taking jobs, gives the held (prefetched, not started) ones back to the queue,
   * lets the running ones finish, then removes the sandboxes.
   */
  close(): Promise<void>;
}

/**
 * Starts an executor: prepares the sandbox backend (Docker: checks the image, reaps orphan
 * containers; bwrap: stages the harness, probes bwrap, finds cgroups), warms the pool, then
 * starts consuming the queue. Fails (without consuming) if the backend cannot run sandboxes.
 */
export async function startExecutor(opts: ExecutorOptions): Promise<RunningExecutor> {
  const logger = opts.logger;
  const queueName = opts.queueName ?? DEFAULT_REWARD_QUEUE;
  const concurrency = opts.concurrency ?? 2;
  const prefetch = opts.prefetch ?? DEFAULT_PREFETCH;
  if (!Number.isInteger(prefetch) || prefetch < 0) throw new Error(`executor prefetch must be an integer >= 0, got ${prefetch}`);
  const container = opts.containerLimits ?? DEFAULT_CONTAINER_LIMITS;
  const limits = opts.defaultLimits ?? DEFAULT_SANDBOX_LIMITS;
  const image = opts.image ?? SANDBOX_IMAGE;
  const owner = opts.executorId || `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;

  const backend = await openSandboxBackend(opts.backend ?? sandboxBackendFromEnv(), {
    owner,
    limits: container,
    image,
    ...(opts.docker ? { docker: opts.docker } : {}),
    ...(opts.bwrapHostUid !== undefined ? { bwrapHostUid: opts.bwrapHostUid } : {}),
    ...(opts.cgroupParent ? { cgroupParent: opts.cgroupParent } : {}),
    ...(logger ? { logger } : {}),
  });
  logger?.info("sandbox backend", backend.describe);

  // BullMQ does not close connections it was given: they are ours to close.
  const connections: Redis[] = [];
  const redis = (role: "worker" | "client") => {
    const r = createRedis(opts.redisUrl, { role, ...(logger ? { logger } : {}) });
    connections.push(r);
    return r;
  };
  let depthQueue: Queue | undefined;
  let metrics: ExecutorMetrics | undefined;
  if (opts.registry) {
    depthQueue = new Queue(queueName, { connection: redis("client") });
    const q = depthQueue;
    metrics = createExecutorMetrics(opts.registry, async () => {
      const c = await q.getJobCounts("waiting", "delayed", "prioritized");
      return (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
    });
  }
  const pool = new SandboxPool({
    size: concurrency,
    create: () => backend.create(),
    acquireTimeoutMs: acquireTimeoutMs(),
    ...(logger ? { logger } : {}),
    onChange: (live, busy) => {
      metrics?.poolSize.set(live);
      metrics?.poolBusy.set(busy);
    },
  });
  try {
    await pool.start();
  } catch (err) {
    await backend.close();
    throw err;
  }
  const worker = createRewardWorker({
    connection: redis("worker"),
    queueName,
    concurrency: concurrency * (1 + prefetch),
    score: (data, onStart) => scoreCandidate(pool, data, { limits, container }, onStart),
    name: owner,
    ...(metrics ? { metrics } : {}),
    ...(logger ? { logger } : {}),
    ...(opts.lockDurationMs ? { lockDurationMs: opts.lockDurationMs } : {}),
    ...(opts.stalledIntervalMs ? { stalledIntervalMs: opts.stalledIntervalMs } : {}),
  });
  opts.onWorker?.(worker);
  await worker.waitUntilReady();
  logger?.info("executor ready", { queue: queueName, concurrency, prefetch, backend: backend.name, ...(backend.name === "docker" ? { image } : {}), owner });
  let closing: Promise<void> | undefined;
  return {
    pool,
    backend,
    worker,
    ...(metrics ? { metrics } : {}),
    close: () =>
      (closing ??= (async () => {
        const workerClosed = worker.close();
        pool.returnWaiters();
        await workerClosed;
        await pool.close();
        await backend.close();
        await depthQueue?.close();
        await Promise.allSettled(connections.map((c) => c.quit()));
      })()),
  };
}
