import { type MetricsServer, createLogger, createMetrics, onShutdown } from "@rlmesh/shared";
import { loadExecutorConfig } from "./executor-config.js";
import { type RunningExecutor, startExecutor } from "./executor.js";
import { DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";

// Wiring only: config, logger, metrics server, executor (sandbox pool + worker), signals.
const logger = createLogger("executor");
const started: { executor?: RunningExecutor; metrics?: MetricsServer } = {};
onShutdown(logger, async () => {
  await started.executor?.close();
  await started.metrics?.close();
});

try {
  const config = loadExecutorConfig();
  const metrics = createMetrics("executor");
  started.metrics = await metrics.serve(config.metricsPort);
  logger.info("metrics listening", { port: started.metrics.port });
  started.executor = await startExecutor({
    redisUrl: config.redisUrl,
    queueName: config.queue,
    concurrency: config.concurrency,
    prefetch: config.prefetch,
    executorId: config.executorId,
    image: config.image,
    backend: config.backend,
    bwrapHostUid: config.bwrapHostUid,
    ...(config.cgroupParent ? { cgroupParent: config.cgroupParent } : {}),
    containerLimits: {
      memory_mb: config.containerMemoryMb,
      cpus: config.cpus,
      pids: config.pids,
      tmpfs_mb: config.tmpfsMb,
      file_size_mb: DEFAULT_CONTAINER_LIMITS.file_size_mb,
      open_files: DEFAULT_CONTAINER_LIMITS.open_files,
    },
    defaultLimits: {
      timeout_ms_per_test: config.timeoutMsPerTest,
      total_timeout_ms: config.totalTimeoutMs,
      memory_mb: config.memoryMb,
      output_bytes: config.outputBytes,
    },
    registry: metrics.registry,
    logger,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
  });
} catch (err) {
  // ConfigError names the variable; SandboxError says what is missing (Docker, the image, bwrap).
  logger.error("executor failed to start", { err: (err as Error).message });
  await started.executor?.close();
  await started.metrics?.close();
  process.exit(1);
}
