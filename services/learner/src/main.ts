import { createLogger, createMetrics, createRedis, loadConfig, loadProto, onShutdown, startGrpcServer, SERVICE_NAMES, type GrpcServerHandle, type MetricsServer } from "@rlmesh/shared";
import { LEARNER_CONFIG, repoPath, warmupRecipe } from "./config.js";
import { JobTrainers } from "./trainer/job-trainers.js";
import { referenceShape, servedShapeOfModelInfo } from "./trainer/model-compat.js";
import { LearnerMetrics } from "./learner-metrics.js";
import { createLearnerService } from "./learner-service.js";
import { WeightPusher } from "./push/weight-pusher.js";

const logger = createLogger("learner");
const config = loadConfig(LEARNER_CONFIG);
const metrics = createMetrics("learner");
const learnerMetrics = new LearnerMetrics(metrics.registry);
const redis = createRedis(config.redisUrl, { role: "client", logger });
const pusher = new WeightPusher(redis, logger, learnerMetrics, { transport: config.pushTransport, dataHost: config.host, dataPort: config.pushDataPort });

// Signal handling first: a SIGTERM during start-up (model load, checkpoint resume) still stops cleanly.
const started: { grpc?: GrpcServerHandle; metrics?: MetricsServer; jobs?: JobTrainers } = {};
onShutdown(logger, async () => {
  await started.grpc?.shutdown(config.shutdownGraceMs);
  pusher.close();
  await started.metrics?.close();
  redis.disconnect();
  await started.jobs?.close();
});

const warmup = (() => {
  try {
    return warmupRecipe(config);
  } catch (err) {
    logger.error("learner cannot start", { err: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
})();
const jobs = await JobTrainers.open({
  root: repoPath(config.checkpointDir),
  ...(warmup ? { warmup } : {}),
  trainer: {
    maxStaleness: config.maxStaleness,
    maxTokensPerPass: config.maxTokensPerPass,
    checkpointEvery: config.checkpointEvery,
    keepCheckpoints: config.keepCheckpoints,
    runSeed: config.seed,
    guard: {
      rewardSmoothing: config.guardRewardSmoothing,
      rewardRelativeDrop: config.guardRewardDrop,
      rewardPatience: config.guardRewardPatience,
      passDrop: config.guardPassDrop,
      passZ: config.guardPassZ,
      maxRollbacks: config.guardMaxRollbacks,
    },
    metrics: learnerMetrics,
  },
  logger,
  // A job's model must be the architecture the rollout workers serve (with none registered yet,
  // the one this learner is configured with: the mesh's model).
  servedModels: async () => {
    const infos = await pusher.servedModels();
    if (infos.length > 0) return infos.map((w) => servedShapeOfModelInfo(w.info, `rollout worker ${w.workerId}`));
    return [await referenceShape(repoPath(config.modelDir))];
  },
}).catch((err: unknown) => {
  // A bad checkpoint or job record is a configuration problem: one clear line, exit 1.
  logger.error("learner cannot start", { err: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
started.jobs = jobs;
const service = createLearnerService({ jobs, logger, push: (policy, tensors) => pusher.push(policy, tensors) });
const grpcServer = await startGrpcServer({
  host: config.host,
  port: config.port,
  logger,
  services: [{ name: SERVICE_NAMES.learner, definition: loadProto().proto.rlmesh.v1.LearnerService.service, implementation: service }],
});
started.grpc = grpcServer;
const metricsServer = await metrics.serve(config.metricsPort);
started.metrics = metricsServer;
// A job resumed at start-up warms up now that the learner serves (StartJob does it for the others).
const resumed = jobs.current();
if (resumed) jobs.warmUp(resumed.jobId);
logger.info("learner ready", { grpc: grpcServer.address, metricsPort: metricsServer.port, job: jobs.current()?.jobId ?? "", ...jobs.current()?.trainer.status() });
