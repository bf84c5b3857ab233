import { isAbsolute, join } from "node:path";
import type { ConfigOf, Schema } from "@rlmesh/shared";
import {
  DEFAULT_MAX_ROLLBACKS,
  DEFAULT_PASS_DROP,
  DEFAULT_PASS_Z,
  DEFAULT_REWARD_PATIENCE,
  DEFAULT_REWARD_RELATIVE_DROP,
  DEFAULT_REWARD_SMOOTHING,
} from "./trainer/collapse-guard.js";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { DEFAULT_WARMUP_MAX_HEAP_MIB, DEFAULT_WARMUP_RECIPE, parseTokenRange, type WarmupRecipe } from "./trainer/warmup.js";

export const LEARNER_CONFIG = {
  redisUrl: { env: "REDIS_URL", type: "string", default: "redis://127.0.0.1:6379", doc: "Redis of the worker registry (rollout workers the learner pushes weights to)" },
  host: { env: "RLMESH_LEARNER_HOST", type: "string", default: "127.0.0.1", doc: "gRPC listen address of the learner (LearnerService)" },
  port: { env: "RLMESH_LEARNER_PORT", type: "int", default: 50071, min: 0, max: 65535, doc: "gRPC port of the learner" },
  metricsPort: { env: "RLMESH_LEARNER_METRICS_PORT", type: "int", default: 9471, min: 0, max: 65535, doc: "Prometheus /metrics and /healthz port of the learner" },
  modelDir: { env: "RLMESH_MODEL_DIR", type: "string", default: "models/tiny-coder", doc: "Model directory (manifest.json, model.onnx, tokenizer.json); relative to the repo root" },
  checkpointDir: { env: "RLMESH_CHECKPOINT_DIR", type: "string", default: ".rlmesh/checkpoints", doc: "Learner checkpoints (resumed at start-up); relative to the repo root" },
  maxStaleness: { env: "RLMESH_MAX_STALENESS", type: "int", default: 1, min: 0, doc: "Samples more than this many policy versions old are rejected" },
  maxTokensPerPass: { env: "RLMESH_LEARNER_MAX_TOKENS_PER_PASS", type: "int", default: 8192, min: 16, doc: "Rows × tokens per policy forward/backward; bigger batches are split into chunks whose gradients are summed (bounds the jax-js heap)" },
  checkpointEvery: { env: "RLMESH_CHECKPOINT_EVERY", type: "int", default: 1, min: 1, doc: "Write a checkpoint after every N TrainSteps" },
  keepCheckpoints: { env: "RLMESH_KEEP_CHECKPOINTS", type: "int", default: 3, min: 1, doc: "Checkpoints kept on disk (plus the collapse guard's last good one)" },
  guardRewardSmoothing: { env: "RLMESH_GUARD_REWARD_SMOOTHING", type: "int", default: DEFAULT_REWARD_SMOOTHING, min: 1, doc: "Collapse guard: judge the mean reward of the last N steps (1 = single steps)" },
  guardRewardDrop: { env: "RLMESH_GUARD_REWARD_DROP", type: "float", default: DEFAULT_REWARD_RELATIVE_DROP, min: 0, max: 1, doc: "Collapse guard: a smoothed reward below baseline × (1 − this) is bad" },
  guardRewardPatience: { env: "RLMESH_GUARD_REWARD_PATIENCE", type: "int", default: DEFAULT_REWARD_PATIENCE, min: 1, doc: "Collapse guard: consecutive bad steps that roll back" },
  guardPassDrop: { env: "RLMESH_GUARD_PASS_DROP", type: "float", default: DEFAULT_PASS_DROP, min: 0, max: 1, doc: "Collapse guard: a held-out pass@1 this far below the best (fraction) is bad" },
  guardPassZ: { env: "RLMESH_GUARD_PASS_Z", type: "float", default: DEFAULT_PASS_Z, min: 0, doc: "Collapse guard: the held-out drop must also exceed this many standard errors (from each eval's n)" },
  guardMaxRollbacks: { env: "RLMESH_GUARD_MAX_ROLLBACKS", type: "int", default: DEFAULT_MAX_ROLLBACKS, min: 0, doc: "Collapse guard: rollbacks before it gives up" },
  seed: { env: "RLMESH_LEARNER_SEED", type: "int", default: 1, min: 0, doc: "Run seed for masks/substitution when a TrainStep carries seed 0 (fresh start only)" },
  pushTransport: {
    env: "RLMESH_PUSH_TRANSPORT",
    type: "enum",
    values: ["tcp", "grpc"] as const,
    default: "tcp",
    doc: "How weight pushes carry the tensor bytes: tcp (a data connection negotiated by UpdateWeights, workers connect back to the learner; chunks for a worker that cannot) or grpc (chunks on the UpdateWeights stream)",
  },
  pushDataPort: { env: "RLMESH_PUSH_DATA_PORT", type: "int", default: 0, min: 0, max: 65535, doc: "Port of the learner's weight data server on RLMESH_LEARNER_HOST (0: a free one, told to each worker per push)" },
  warmup: { env: "RLMESH_LEARNER_WARMUP", type: "bool", default: true, doc: "Compile a started job's batch shapes (RLMESH_LEARNER_WARMUP_*) in the background after StartJob, instead of inside its first TrainSteps; 0 = off" },
  warmupRows: { env: "RLMESH_LEARNER_WARMUP_ROWS", type: "int", default: DEFAULT_WARMUP_RECIPE.rows, min: 1, doc: "Warm-up: samples per TrainStep (a job's prompts_per_step × group_size; default: the demo's 4 × 8)" },
  warmupPromptTokens: { env: "RLMESH_LEARNER_WARMUP_PROMPT_TOKENS", type: "string", default: DEFAULT_WARMUP_RECIPE.promptTokens.join("-"), doc: "Warm-up: shortest-longest prompt in tokens (default: the toy task suite's)" },
  warmupResponseTokens: { env: "RLMESH_LEARNER_WARMUP_RESPONSE_TOKENS", type: "int", default: DEFAULT_WARMUP_RECIPE.responseTokens, min: 1, doc: "Warm-up: longest response in tokens (a job's max_new_tokens)" },
  warmupMaxSeconds: { env: "RLMESH_LEARNER_WARMUP_MAX_SECONDS", type: "float", default: DEFAULT_WARMUP_RECIPE.maxSeconds, min: 0.001, doc: "Warm-up: no new batch shape is started after this many seconds" },
  warmupMaxHeapMb: {
    env: "RLMESH_LEARNER_WARMUP_MAX_HEAP_MB",
    type: "int",
    default: DEFAULT_WARMUP_MAX_HEAP_MIB,
    min: 0,
    max: 4096,
    doc: "Warm-up: no batch shape is started that would take jax-js's wasm heap (4 GiB at most, never shrinks) past this many MiB; shapes that ran in this process before cost nothing",
  },
  shutdownGraceMs: { env: "RLMESH_SHUTDOWN_GRACE_MS", type: "int", default: 10000, min: 0, doc: "Graceful shutdown wait before forcing (all services)" },
} satisfies Schema;

export type LearnerConfig = ConfigOf<typeof LEARNER_CONFIG>;

/** A configured path: absolute as given, relative ones from the repository root. */
export function repoPath(p: string): string {
  return isAbsolute(p) ? p : join(REPO_ROOT, p);
}

/** The warm-up recipe of the configuration, or undefined when RLMESH_LEARNER_WARMUP is off. */
export function warmupRecipe(
  c: Pick<LearnerConfig, "warmup" | "warmupRows" | "warmupPromptTokens" | "warmupResponseTokens" | "warmupMaxSeconds"> & Partial<Pick<LearnerConfig, "warmupMaxHeapMb">>,
): WarmupRecipe | undefined {
  if (!c.warmup) return undefined;
  return {
    rows: c.warmupRows,
    promptTokens: parseTokenRange(LEARNER_CONFIG.warmupPromptTokens.env, c.warmupPromptTokens),
    responseTokens: c.warmupResponseTokens,
    maxSeconds: c.warmupMaxSeconds,
    maxHeapMiB: c.warmupMaxHeapMb ?? DEFAULT_WARMUP_MAX_HEAP_MIB,
  };
}
