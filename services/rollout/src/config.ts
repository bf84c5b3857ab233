import { hostname } from "node:os";
import type { Schema } from "@rlmesh/shared";

export const ROLLOUT_CONFIG = {
  redisUrl: {
    env: "REDIS_URL",
    type: "string",
    default: "redis://127.0.0.1:6379",
    doc: "Redis where rollout workers register (TTL heartbeat)",
  },
  host: { env: "RLMESH_ROLLOUT_HOST", type: "string", default: "127.0.0.1", doc: "gRPC listen address of the rollout worker" },
  port: { env: "RLMESH_ROLLOUT_PORT", type: "int", default: 50061, min: 0, max: 65535, doc: "gRPC port of the rollout worker" },
  advertiseHost: {
    env: "RLMESH_ROLLOUT_ADVERTISE_HOST",
    type: "string",
    default: "",
    doc: "Host other services dial (default: the listen host, or the hostname when listening on 0.0.0.0)",
  },
  metricsPort: {
    env: "RLMESH_ROLLOUT_METRICS_PORT",
    type: "int",
    default: 9461,
    min: 0,
    max: 65535,
    doc: "Prometheus /metrics port of the rollout worker",
  },
  workerId: { env: "RLMESH_WORKER_ID", type: "string", default: "", doc: "Registry id of this worker (default hostname-pid)" },
  modelDir: {
    env: "RLMESH_MODEL_DIR",
    type: "string",
    default: "models/tiny-coder",
    doc: "Model directory (manifest.json, model.onnx, tokenizer.json)",
  },
  learnerAddr: {
    env: "RLMESH_LEARNER_ADDR",
    type: "string",
    default: "127.0.0.1:50071",
    doc: "Learner to catch up weights from (GetWeights)",
  },
  replicas: {
    env: "RLMESH_ROLLOUT_REPLICAS",
    type: "int",
    default: 1,
    min: 1,
    max: 64,
    doc: "Decode worker threads (one onnxruntime session each)",
  },
  ortThreads: {
    env: "RLMESH_ORT_THREADS",
    type: "int",
    default: 0,
    min: 0,
    max: 256,
    doc: "intraOpNumThreads per session (0 = cores / replicas)",
  },
  executionProvider: {
    env: "RLMESH_EXECUTION_PROVIDER",
    type: "enum",
    values: ["cpu", "cuda", "webgpu"] as const,
    default: "cpu",
    doc: "onnxruntime execution provider (falls back to cpu, logged)",
  },
  catchUpIntervalMs: {
    env: "RLMESH_CATCHUP_INTERVAL_MS",
    type: "int",
    default: 2000,
    min: 100,
    doc: "How often the worker checks the learner for a newer version",
  },
  shutdownGraceMs: { env: "RLMESH_SHUTDOWN_GRACE_MS", type: "int", default: 10000, min: 0, doc: "Graceful shutdown wait before forcing" },
} satisfies Schema;

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}`;
}
