import { type ConfigOf, loadConfig } from "@rlmesh/shared";
import { DEFAULT_REWARD_QUEUE } from "@rlmesh/shared/reward/queue-names";
import { DEFAULT_CONTAINER_LIMITS, DEFAULT_SANDBOX_LIMITS } from "./sandbox-limits.js";
import { SANDBOX_IMAGE } from "./sandbox-image.js";
import { DEFAULT_BWRAP_HOST_UID } from "./bwrap-sandbox.js";
import { DEFAULT_SANDBOX_BACKEND, SANDBOX_BACKENDS } from "./sandbox-backend.js";
import { DEFAULT_PREFETCH } from "./executor.js";
import { DEFAULT_LOCK_MS, DEFAULT_STALLED_INTERVAL_MS } from "./reward-worker.js";

/** Environment of the executor service (validated once at start-up). */
export const EXECUTOR_CONFIG = {
  redisUrl: { env: "REDIS_URL", type: "string", doc: "Redis of the BullMQ queues" },
  queue: { env: "RLMESH_REWARD_QUEUE", type: "string", default: DEFAULT_REWARD_QUEUE, doc: "Queue the executor consumes" },
  concurrency: {
    env: "RLMESH_EXECUTOR_CONCURRENCY",
    type: "int",
    default: 2,
    min: 1,
    max: 256,
    doc: "Candidates scored at once (= warm sandboxes)",
  },
  prefetch: {
    env: "RLMESH_EXECUTOR_PREFETCH",
    type: "int",
    default: DEFAULT_PREFETCH,
    min: 0,
    max: 16,
    doc: "Reward jobs held per warm sandbox beyond the one it runs, so a freed sandbox never waits for a Redis round trip (0: fetch a job only when a sandbox is free)",
  },
  executorId: {
    env: "RLMESH_EXECUTOR_ID",
    type: "string",
    default: "",
    doc: "Owner label of this executor's sandboxes (default host-pid)",
  },
  metricsPort: {
    env: "RLMESH_EXECUTOR_METRICS_PORT",
    type: "int",
    default: 9464,
    min: 0,
    max: 65535,
    doc: "Port of /metrics (0: any free port)",
  },
  backend: {
    env: "RLMESH_SANDBOX_BACKEND",
    type: "enum",
    values: SANDBOX_BACKENDS,
    default: DEFAULT_SANDBOX_BACKEND,
    doc: "Sandbox backend: docker (warm containers) or bwrap (bubblewrap namespaces, no Docker needed)",
  },
  bwrapHostUid: {
    env: "RLMESH_BWRAP_HOST_UID",
    type: "int",
    default: DEFAULT_BWRAP_HOST_UID,
    min: 1,
    doc: "bwrap: host uid the sandboxes run as when the executor is root",
  },
  cgroupParent: {
    env: "RLMESH_BWRAP_CGROUP_PARENT",
    type: "string",
    default: "",
    doc: "bwrap: a delegated cgroup v2 directory for per-sandbox cgroups (default: this process's own cgroup, then cgroup v1, else rlimits)",
  },
  image: { env: "RLMESH_SANDBOX_IMAGE", type: "string", default: SANDBOX_IMAGE, doc: "Sandbox image (deploy/sandbox/build-image.sh)" },
  containerMemoryMb: {
    env: "RLMESH_SANDBOX_CONTAINER_MEMORY_MB",
    type: "int",
    default: DEFAULT_CONTAINER_LIMITS.memory_mb,
    min: 128,
    doc: "Memory (= memory+swap) of each sandbox container",
  },
  cpus: {
    env: "RLMESH_SANDBOX_CPUS",
    type: "float",
    default: DEFAULT_CONTAINER_LIMITS.cpus,
    min: 0.1,
    doc: "CPU quota of each sandbox container",
  },
  pids: {
    env: "RLMESH_SANDBOX_PIDS",
    type: "int",
    default: DEFAULT_CONTAINER_LIMITS.pids,
    min: 8,
    doc: "Pids limit of each sandbox container",
  },
  tmpfsMb: {
    env: "RLMESH_SANDBOX_TMPFS_MB",
    type: "int",
    default: DEFAULT_CONTAINER_LIMITS.tmpfs_mb,
    min: 1,
    doc: "Size of the sandbox's noexec /tmp",
  },
  timeoutMsPerTest: {
    env: "RLMESH_SANDBOX_TIMEOUT_MS_PER_TEST",
    type: "int",
    default: DEFAULT_SANDBOX_LIMITS.timeout_ms_per_test,
    min: 1,
    doc: "Default time per test",
  },
  totalTimeoutMs: {
    env: "RLMESH_SANDBOX_TOTAL_TIMEOUT_MS",
    type: "int",
    default: DEFAULT_SANDBOX_LIMITS.total_timeout_ms,
    min: 1,
    doc: "Default time per candidate",
  },
  memoryMb: {
    env: "RLMESH_SANDBOX_MEMORY_MB",
    type: "int",
    default: DEFAULT_SANDBOX_LIMITS.memory_mb,
    min: 16,
    doc: "Default address-space limit of a candidate",
  },
  outputBytes: {
    env: "RLMESH_SANDBOX_OUTPUT_BYTES",
    type: "int",
    default: DEFAULT_SANDBOX_LIMITS.output_bytes,
    min: 1024,
    doc: "Default output cap of a candidate",
  },
  lockDurationMs: {
    env: "RLMESH_EXECUTOR_LOCK_MS",
    type: "int",
    default: DEFAULT_LOCK_MS,
    min: 1000,
    doc: "BullMQ lock duration (a dead executor's job is retried after this)",
  },
  stalledIntervalMs: {
    env: "RLMESH_EXECUTOR_STALLED_INTERVAL_MS",
    type: "int",
    default: DEFAULT_STALLED_INTERVAL_MS,
    min: 500,
    doc: "How often stalled jobs are looked for",
  },
} as const;

export type ExecutorConfig = ConfigOf<typeof EXECUTOR_CONFIG>;

export function loadExecutorConfig(env: NodeJS.ProcessEnv = process.env): ExecutorConfig {
  return loadConfig(EXECUTOR_CONFIG, env);
}
