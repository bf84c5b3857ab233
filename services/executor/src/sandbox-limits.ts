import type { SandboxLimits } from "@rlmesh/shared/reward/reward-jobs";

export type { SandboxLimits };

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = Object.freeze({
  // Generous: some MBPP references take 3 s per test on a loaded 2-core machine.
  timeout_ms_per_test: 10_000,
  total_timeout_ms: 30_000,
  memory_mb: 512,
  output_bytes: 1 << 20,
});

/** Upper bounds a job may ask for; a job cannot buy itself more than this. */
export const MAX_SANDBOX_LIMITS: SandboxLimits = Object.freeze({
  timeout_ms_per_test: 60_000,
  total_timeout_ms: 120_000,
  memory_mb: 2048,
  output_bytes: 16 << 20,
});

/** Merges a job's partial limits over the defaults, clamped to the maximums. */
export function resolveLimits(
  partial: Partial<SandboxLimits> | undefined,
  defaults: SandboxLimits = DEFAULT_SANDBOX_LIMITS,
): SandboxLimits {
  const out = { ...defaults };
  for (const key of Object.keys(out) as (keyof SandboxLimits)[]) {
    const v = partial?.[key];
    if (typeof v === "number" && Number.isFinite(v) && v > 0) out[key] = Math.min(v, MAX_SANDBOX_LIMITS[key]);
  }
  out.total_timeout_ms = Math.max(out.total_timeout_ms, out.timeout_ms_per_test);
  return out;
}

/** Per-container limits (Docker HostConfig), fixed per pool. */
export interface ContainerLimits {
  /** Memory = memory+swap of the container; must exceed the candidate's memory_mb. @defaultValue 768 */
  memory_mb: number;
  /** CPU quota. @defaultValue 1 */
  cpus: number;
  /** Max processes/threads in the container (fork storms stop here). @defaultValue 64 */
  pids: number;
  /** Size of the noexec tmpfs on /tmp. @defaultValue 64 */
  tmpfs_mb: number;
  /** Max size of one written file (fsize ulimit). @defaultValue 16 */
  file_size_mb: number;
  /** Max open files (nofile ulimit). @defaultValue 256 */
  open_files: number;
}

/** Container memory kept free of the candidate's address-space limit (the fork server, the judge). */
export const CONTAINER_MEMORY_HEADROOM_MB = 64;
/** Open files a candidate's process may hold (the container's own limit can be higher). */
export const CANDIDATE_MAX_OPEN_FILES = 64;

export const DEFAULT_CONTAINER_LIMITS: ContainerLimits = Object.freeze({
  memory_mb: 768,
  cpus: 1,
  pids: 64,
  tmpfs_mb: 64,
  file_size_mb: 16,
  open_files: 256,
});
