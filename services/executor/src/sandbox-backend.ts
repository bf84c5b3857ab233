import Docker from "dockerode";
import type { Logger } from "@rlmesh/shared";
import { BwrapSandbox, DEFAULT_BWRAP_HOST_UID, assertBwrapWorks, removeStagedRoot, stageBwrapRoot } from "./bwrap-sandbox.js";
import { DockerSandbox, assertSandboxImage, reapOrphanSandboxes } from "./docker-sandbox.js";
import { SandboxCgroups } from "./sandbox-cgroup.js";
import { SandboxError } from "./sandbox-error.js";
import { SANDBOX_IMAGE } from "./sandbox-image.js";
import { type ContainerLimits, DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";
import type { Sandbox } from "./sandbox-pool.js";

/** The sandbox backends (RLMESH_SANDBOX_BACKEND). */
export const SANDBOX_BACKENDS = ["docker", "bwrap"] as const;
export type SandboxBackendName = (typeof SANDBOX_BACKENDS)[number];
export const DEFAULT_SANDBOX_BACKEND: SandboxBackendName = "docker";

/** RLMESH_SANDBOX_BACKEND, validated; the default when unset. */
export function sandboxBackendFromEnv(env: NodeJS.ProcessEnv = process.env): SandboxBackendName {
  const v = env.RLMESH_SANDBOX_BACKEND;
  if (v === undefined || v === "") return DEFAULT_SANDBOX_BACKEND;
  if ((SANDBOX_BACKENDS as readonly string[]).includes(v)) return v as SandboxBackendName;
  throw new SandboxError(`RLMESH_SANDBOX_BACKEND=${v}: expected one of ${SANDBOX_BACKENDS.join(", ")}`);
}

/**
 * Where sandboxes come from: the pool calls create() for each warm sandbox; close() releases
 * what the backend set up (after the pool destroyed its sandboxes). Both backends run the same
 * harness (fork_server.py as PID 1, the same framed protocol on its stdin/stdout).
 */
export interface SandboxBackend {
  readonly name: SandboxBackendName;
  /** What the backend isolates with, for the start-up log. */
  readonly describe: Record<string, unknown>;
  create(): Promise<Sandbox>;
  close(): Promise<void>;
}

export interface SandboxBackendOptions {
  /** Owner label of Docker containers. */
  owner: string;
  /** @defaultValue DEFAULT_CONTAINER_LIMITS */
  limits?: ContainerLimits;
  /** Docker backend: image and client. */
  image?: string;
  docker?: Docker;
  /** bwrap backend: host uid when the executor is root; a cgroup v2 parent to create sandboxes under. */
  bwrapHostUid?: number;
  cgroupParent?: string;
  logger?: Logger;
}

/**
 * Checks and prepares a backend: Docker (image present with the current harness, orphan
 * containers reaped) or bwrap (harness staged read-only, a probe sandbox run, cgroups found or
 * the rlimits fallback chosen; the choice is logged). Throws SandboxError naming the fix.
 */
export async function openSandboxBackend(name: SandboxBackendName, opts: SandboxBackendOptions): Promise<SandboxBackend> {
  const limits = opts.limits ?? DEFAULT_CONTAINER_LIMITS;
  const logger = opts.logger;
  if (name === "docker") {
    const docker = opts.docker ?? new Docker();
    const image = opts.image ?? SANDBOX_IMAGE;
    await assertSandboxImage(docker, image);
    const reaped = await reapOrphanSandboxes(docker);
    if (reaped > 0) logger?.info("reaped orphan sandboxes", { count: reaped });
    return {
      name,
      describe: { backend: name, image, isolation: "docker: namespaces, cgroup, seccomp default profile, no capabilities" },
      create: () => DockerSandbox.start({ docker, image, owner: opts.owner, limits }),
      close: async () => undefined,
    };
  }
  const stagedRoot = stageBwrapRoot();
  const hostUid = opts.bwrapHostUid ?? DEFAULT_BWRAP_HOST_UID;
  let cgroups: SandboxCgroups | undefined;
  try {
    await assertBwrapWorks(stagedRoot, { hostUid });
    cgroups = await SandboxCgroups.open(limits, opts.cgroupParent ? { parent: opts.cgroupParent } : {});
  } catch (err) {
    removeStagedRoot(stagedRoot);
    throw err;
  }
  const asRoot = process.getuid?.() === 0;
  const describe = {
    backend: name,
    resource_limits: cgroups.mode,
    resource_limits_detail:
      cgroups.mode === "rlimits"
        ? `${cgroups.reason}; using per-process RLIMIT_AS/CPU/FSIZE/NOFILE per candidate and RLIMIT_NPROC=${limits.pids} per sandbox instead`
        : cgroups.reason,
    host_uid: asRoot ? hostUid : process.getuid?.(),
    seccomp: "none (bwrap without --seccomp)",
  };
  if (cgroups.reaped > 0) logger?.info("reaped orphan bwrap cgroups", { count: cgroups.reaped });
  const live = cgroups;
  return {
    name,
    describe,
    create: () => BwrapSandbox.start({ stagedRoot, limits, cgroups: live, hostUid }),
    close: async () => {
      await live.close();
      removeStagedRoot(stagedRoot);
    },
  };
}

/**
 * Runs fn with RLMESH_SANDBOX_BACKEND set, then restores it: for code that starts an in-process
 * executor with the default backend (runEval) when a caller wants a given one (bench, tests).
 */
export async function withSandboxBackend<T>(backend: SandboxBackendName, fn: () => Promise<T>): Promise<T> {
  const before = process.env.RLMESH_SANDBOX_BACKEND;
  process.env.RLMESH_SANDBOX_BACKEND = backend;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.RLMESH_SANDBOX_BACKEND;
    else process.env.RLMESH_SANDBOX_BACKEND = before;
  }
}
