import { createLogger, createMetrics, createRedis, loadConfig, loadProto, onShutdown, startGrpcServer, SERVICE_NAMES } from "@rlmesh/shared";
import { API_CONFIG } from "./config.js";
import { createJobService } from "./job-service.js";
import { JobStore } from "./job-store.js";

const logger = createLogger("api");
const config = loadConfig(API_CONFIG);
const metrics = createMetrics("api");
const redis = createRedis(config.redisUrl, { role: "client", logger });
const store = new JobStore(redis);
const { proto } = loadProto();
const grpcServer = await startGrpcServer({
  host: config.host,
  port: config.port,
  logger,
  services: [{ name: SERVICE_NAMES.job, definition: proto.rlmesh.v1.JobService.service, implementation: createJobService({ store, redis, logger }) }],
});
const metricsServer = await metrics.serve(config.metricsPort);
logger.info("api ready", { grpc: grpcServer.address, metricsPort: metricsServer.port });

onShutdown(logger, async () => {
  await grpcServer.shutdown(config.shutdownGraceMs);
  await metricsServer.close();
  redis.disconnect();
});
