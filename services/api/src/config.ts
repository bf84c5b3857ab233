import type { Schema } from "@rlmesh/shared";

export const API_CONFIG = {
  redisUrl: {
    env: "REDIS_URL",
    type: "string",
    default: "redis://127.0.0.1:6379",
    doc: "Redis for job state, events and the reward queue",
  },
  host: { env: "RLMESH_API_HOST", type: "string", default: "127.0.0.1", doc: "gRPC listen address of the api (JobService)" },
  port: { env: "RLMESH_API_PORT", type: "int", default: 50051, min: 0, max: 65535, doc: "gRPC port of the api" },
  metricsPort: {
    env: "RLMESH_API_METRICS_PORT",
    type: "int",
    default: 9451,
    min: 0,
    max: 65535,
    doc: "Prometheus /metrics port of the api",
  },
  learnerAddr: { env: "RLMESH_LEARNER_ADDR", type: "string", default: "127.0.0.1:50071", doc: "host:port of the learner (LearnerService)" },
  rewardQueue: { env: "RLMESH_REWARD_QUEUE", type: "string", default: "reward", doc: "BullMQ queue the reward jobs go to" },
  rewardBatch: {
    env: "RLMESH_REWARD_BATCH",
    type: "int",
    default: 1,
    min: 1,
    max: 64,
    doc: "Candidates per reward job: 1 = a BullMQ job each (finest load balancing across executors); more = batch jobs of up to N candidates of one step, each scored by one executor (the queue's per-job cost paid once per batch; a retry re-runs the batch)",
  },
  maxInfraFailureRate: {
    env: "RLMESH_MAX_INFRA_FAILURE_RATE",
    type: "float",
    default: 0.1,
    min: 0,
    max: 1,
    doc: "Largest fraction of a step's candidates that may get no reward (sandbox_error, executor_lost, infra_timeout after their retries) before the job fails",
  },
  ui: { env: "RLMESH_UI", type: "bool", default: false, doc: "Serve the web console (/ui, with Bull Board at /ui/queues) on RLMESH_UI_HOST:RLMESH_UI_PORT" },
  uiHost: { env: "RLMESH_UI_HOST", type: "string", default: "127.0.0.1", doc: "Listen address of the web console (loopback unless set)" },
  uiPort: { env: "RLMESH_UI_PORT", type: "int", default: 9450, min: 0, max: 65535, doc: "HTTP port of the web console" },
  uiToken: {
    env: "RLMESH_UI_TOKEN",
    type: "string",
    default: "",
    doc: "Operator token: with it (Authorization: Bearer, or the /ui/login cookie) the console can cancel jobs and the writable Bull Board at /ui/admin/queues opens; empty = the console is read-only",
  },
  shutdownGraceMs: {
    env: "RLMESH_SHUTDOWN_GRACE_MS",
    type: "int",
    default: 10000,
    min: 0,
    doc: "Graceful shutdown wait before forcing (all services)",
  },
} satisfies Schema;
