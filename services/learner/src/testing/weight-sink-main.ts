// A weight-sink process for `rlmesh bench learner`: a stand-in rollout worker (UpdateWeights only)
// plus a raw TCP sink, both on free loopback ports, printed as one JSON line on stdout.
// Usage: node weight-sink-main.js <redis-url> <worker-id>
import { createLogger, createRedis } from "@rlmesh/shared";
import { startTcpSink, startWeightSink } from "./weight-sink.js";

const [redisUrl, id] = process.argv.slice(2);
if (!redisUrl || !id) {
  console.error("usage: weight-sink-main <redis-url> <worker-id>");
  process.exit(2);
}
const logger = createLogger(`weight-sink-${id}`, { level: "warn" });
const redis = createRedis(redisUrl, { role: "client", logger });
const sink = await startWeightSink({ id, redis, logger });
const tcp = await startTcpSink();
const stop = async () => {
  await sink.stop(true);
  await tcp.close();
  redis.disconnect();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
console.log(JSON.stringify({ grpcPort: sink.port, tcpPort: tcp.port }));
