import {
  type GrpcServerHandle,
  type MetricsServer,
  createLogger,
  createMetrics,
  createRedis,
  loadConfig,
  loadProto,
  onShutdown,
  startGrpcServer,
  SERVICE_NAMES,
} from "@rlmesh/shared";
import { API_CONFIG } from "./config.js";
import { ApiMetrics } from "./api-metrics.js";
import { createJobService } from "./job-service.js";
import { JobStore } from "./job-store.js";
import { Coordinator } from "./coordinator/coordinator.js";
import { validateDatasets } from "./coordinator/job-datasets.js";
import { checkJobModel, rolloutWorkerModels } from "./coordinator/job-model.js";
import { RolloutPool } from "./coordinator/rollout-pool.js";
import { GrpcLearnerClient } from "./coordinator/learner-client.js";
import { QueueRewardScorer } from "./coordinator/queue-reward-scorer.js";
import { startConsole, type ConsoleServer } from "./console/console-server.js";

const logger = createLogger("api");
const config = loadConfig(API_CONFIG);
const metrics = createMetrics("api");
const apiMetrics = new ApiMetrics(metrics.registry);
const redis = createRedis(config.redisUrl, { role: "client", logger });
const workerRedis = createRedis(config.redisUrl, { role: "worker", logger });
const store = new JobStore(redis);
const rollout = new RolloutPool(redis, logger);
const learner = new GrpcLearnerClient(config.learnerAddr, logger);
const rewards = new QueueRewardScorer(workerRedis, config.rewardQueue, logger, { batchSize: config.rewardBatch });
const coordinator = new Coordinator({
  store,
  redis,
  rollout,
  rewards,
  learner,
  logger,
  metrics: apiMetrics,
  maxInfraFailureRate: config.maxInfraFailureRate,
});

// Signal handling first: a SIGTERM during start-up still shuts down cleanly.
const servers: { grpc?: GrpcServerHandle; metrics?: MetricsServer; console?: ConsoleServer } = {};
onShutdown(logger, async () => {
  await servers.console?.close();
  await servers.grpc?.shutdown(config.shutdownGraceMs);
  await coordinator.stop();
  await rewards.close();
  rollout.close();
  learner.close();
  await servers.metrics?.close();
  redis.disconnect();
  workerRedis.disconnect();
});

const { proto } = loadProto();
/** Stops a cancelled job's run; its clean-up (purging reward jobs) may fail with Redis away: logged, never a crash. */
const cancelRun = (id: string) => {
  coordinator.cancel(id).catch((err: unknown) => logger.warn("cancel clean-up failed", { job: id, err: (err as Error).message }));
};
const jobService = createJobService({
  store,
  redis,
  logger,
  validateModel: (spec) => checkJobModel(spec, { servedModels: () => rolloutWorkerModels(() => rollout.workers(), logger) }),
  validateDatasets,
  onSubmitted: (job) => coordinator.start(job),
  onCancelled: (job) => cancelRun(job.id),
});
const grpcServer = await startGrpcServer({
  host: config.host,
  port: config.port,
  logger,
  services: [{ name: SERVICE_NAMES.job, definition: proto.rlmesh.v1.JobService.service, implementation: jobService }],
});
const metricsServer = await metrics.serve(config.metricsPort);
servers.grpc = grpcServer;
servers.metrics = metricsServer;
// The web console (off unless RLMESH_UI): loopback by default, read-only without RLMESH_UI_TOKEN.
if (config.ui) {
  servers.console = await startConsole(
    {
      store,
      redis,
      rewardQueue: config.rewardQueue,
      token: config.uiToken,
      logger,
      traces: (id) => store.readTraces(id),
      cancel: async (id, reason) => {
        const next = await store.transition(id, "JOB_STATE_CANCELLED", reason);
        logger.info("job cancelled", { job: id, from: "console" });
        cancelRun(id);
        return next;
      },
    },
    config.uiHost,
    config.uiPort,
  );
  logger.info("console ready", { url: servers.console.url, readOnly: !config.uiToken });
}
const resumed = await coordinator.resumeAll();
logger.info("api ready", { grpc: grpcServer.address, metricsPort: metricsServer.port, resumedJobs: resumed });
