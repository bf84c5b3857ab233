import {
  createLogger,
  createMetrics,
  createRedis,
  loadConfig,
  loadProto,
  onShutdown,
  registerWorker,
  ROLLOUT_WORKER_KIND,
  startGrpcServer,
  SERVICE_NAMES,
  type GrpcServerHandle,
  type MetricsServer,
  type Registration,
} from "@rlmesh/shared";
import { defaultWorkerId, ROLLOUT_CONFIG } from "./config.js";
import { loadRolloutModel, OrtRolloutEngine } from "./runtime/ort-rollout-engine.js";
import { ProtoRolloutEngine } from "./service/proto-rollout-engine.js";
import { createRolloutService } from "./service/rollout-service.js";
import { RolloutMetrics } from "./service/rollout-metrics.js";
import { WeightCatchUp } from "./service/weight-catch-up.js";
import { weightDataReceiver } from "@rlmesh/shared/weight-data";

const logger = createLogger("rollout");
const config = loadConfig(ROLLOUT_CONFIG);
const workerId = config.workerId || defaultWorkerId();
const metrics = createMetrics("rollout");
const rolloutMetrics = new RolloutMetrics(metrics.registry);
const redis = createRedis(config.redisUrl, { role: "client", logger });

const held: { grpc?: GrpcServerHandle; metrics?: MetricsServer; registration?: Registration; catchUp?: WeightCatchUp } = {};
const runtime = await OrtRolloutEngine.create({
  model: await loadRolloutModel(config.modelDir),
  replicas: config.replicas,
  ...(config.ortThreads > 0 ? { intraOpNumThreads: config.ortThreads } : {}),
  executionProvider: config.executionProvider,
  workerId,
  logger,
});
const engine = new ProtoRolloutEngine(runtime, { onInfill: (res, seconds) => rolloutMetrics.observeInfill(res, seconds) });
onShutdown(logger, async () => {
  await held.registration?.close();
  held.catchUp?.close();
  // No more direct pushes on the kept data connections (the learner sends them with a call, which a closing server refuses).
  weightDataReceiver.close();
  await held.grpc?.shutdown(config.shutdownGraceMs);
  await engine.close();
  await held.metrics?.close();
  redis.disconnect();
});

const info = engine.modelInfo();
logger.info("model loaded", { model: info.modelName, executionProvider: info.executionProvider, policyVersion: info.policyVersion });
rolloutMetrics.weightVersion.set(Number(info.policyVersion ?? 0));

const { proto } = loadProto();
held.grpc = await startGrpcServer({
  host: config.host,
  port: config.port,
  logger,
  services: [
    {
      name: SERVICE_NAMES.rollout,
      definition: proto.rlmesh.v1.RolloutService.service,
      // A Generate for a job whose weights this worker missed pulls them at once.
      implementation: createRolloutService({ engine, logger, metrics: rolloutMetrics, onOtherJob: () => void held.catchUp?.check() }),
    },
  ],
});
held.metrics = await metrics.serve(config.metricsPort);

const advertise =
  config.advertiseHost || (config.host === "0.0.0.0" || config.host === "::" ? (await import("node:os")).hostname() : config.host);
const publish = () => ({
  policy_version: Number(engine.modelInfo().policyVersion ?? 0),
  policy_job_id: engine.servedPolicy().jobId,
  execution_provider: String(engine.modelInfo().executionProvider ?? "cpu"),
});
// Catch up with the learner before taking traffic, then keep checking.
held.catchUp = new WeightCatchUp(config.learnerAddr, engine, logger, (p) => {
  rolloutMetrics.weightVersion.set(p.version);
  void held.registration?.refresh(publish());
});
await held.catchUp.check();
held.registration = await registerWorker(
  redis,
  ROLLOUT_WORKER_KIND,
  { id: workerId, address: `${advertise}:${held.grpc.port}`, meta: publish() },
  { logger },
);
held.catchUp.start(config.catchUpIntervalMs);
logger.info("rollout worker ready", {
  id: workerId,
  grpc: held.grpc.address,
  advertise: `${advertise}:${held.grpc.port}`,
  metricsPort: held.metrics.port,
});
