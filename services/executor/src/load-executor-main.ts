import { createLogger, createRedis, onShutdown } from "@rlmesh/shared";
import { loadExecutorConfig } from "./executor-config.js";
import { type RunningExecutor, startExecutor } from "./executor.js";

// An executor process for the reward-queue load test (reward-queue-load.ts): the real executor
// (startExecutor: warm sandboxes, the BullMQ reward worker) plus the test's evidence, two per-job
// counters in Redis hashes named by RLMESH_LOAD_COUNTERS: `<key>:started` +1 when this process
// starts a job, `<key>:recorded` a field `<id>\t<pid>:<processedOn>` when BullMQ has accepted this
// process's result for it (one field per completion, so a resent command counts once; the
// worker's `completed` event fires only after the job moved to completed under its lock).
const logger = createLogger("executor");
const started: { executor?: RunningExecutor } = {};
onShutdown(logger, async () => {
  await started.executor?.close();
});

const key = process.env.RLMESH_LOAD_COUNTERS;
try {
  if (!key) throw new Error("RLMESH_LOAD_COUNTERS is not set");
  const config = loadExecutorConfig();
  // A worker-role connection waits out a Redis restart instead of failing the increment.
  const counters = createRedis(config.redisUrl, { role: "worker", logger });
  const count = (what: string, id: string | undefined) => {
    if (id) counters.hincrby(`${key}:${what}`, id, 1).catch((err: Error) => logger.error("counter failed", { what, id, err: err.message }));
  };
  started.executor = await startExecutor({
    redisUrl: config.redisUrl,
    queueName: config.queue,
    concurrency: config.concurrency,
    prefetch: config.prefetch,
    logger,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
    onWorker: (worker) => {
      worker.on("active", (job) => count("started", job.id));
      // Recorded as a set member per completion (this process, the job's take): a command that
      // ioredis resends after a Redis restart (applied, reply lost) is not a second record.
      worker.on("completed", (job) => {
        if (job.id)
          counters
            .hset(`${key}:recorded`, `${job.id}\t${process.pid}:${job.processedOn ?? 0}`, 1)
            .catch((err: Error) => logger.error("counter failed", { what: "recorded", id: job.id, err: err.message }));
      });
    },
  });
} catch (err) {
  logger.error("executor failed to start", { err: (err as Error).message });
  await started.executor?.close();
  process.exit(1);
}
