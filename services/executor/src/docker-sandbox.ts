import { hostname } from "node:os";
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import { type ContainerLimits, DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";
import { HARNESS_SHA_LABEL, SANDBOX_HARNESS_PATH, SANDBOX_IMAGE, SANDBOX_UID, harnessSourceSha } from "./sandbox-image.js";
import { DockerStreamDemuxer, type SandboxRequest, type SandboxResponse } from "./sandbox-protocol.js";
import { ForkServerConnection } from "./fork-server-connection.js";
import { SandboxError } from "./sandbox-error.js";

/** Label on every sandbox container (what orphan reaping looks for). */
export const SANDBOX_LABEL = "rlmesh.sandbox";
export const SANDBOX_OWNER_LABEL = "rlmesh.sandbox.owner";
export const SANDBOX_HOST_LABEL = "rlmesh.sandbox.host";
export const SANDBOX_PID_LABEL = "rlmesh.sandbox.pid";

/** Time the fork server gets to report ready after the container starts. */
export const DEFAULT_START_TIMEOUT_MS = 20_000;
/** Slack over a request's total budget before the executor gives up on the container. */
export const DEFAULT_WATCHDOG_GRACE_MS = 5_000;

export interface DockerSandboxOptions {
  docker: Docker;
  /** @defaultValue SANDBOX_IMAGE */
  image?: string;
  /** Value of the owner label (an executor instance id). */
  owner: string;
  /** @defaultValue DEFAULT_CONTAINER_LIMITS */
  limits?: ContainerLimits;
  /** @defaultValue DEFAULT_START_TIMEOUT_MS */
  startTimeoutMs?: number;
}

/**
 * Docker create options of a sandbox container. Pure, so the hardening is reviewable in one
 * place and unit-tested: no network, memory == memory+swap, CPU quota, pids limit, read-only
 * rootfs with a small noexec tmpfs, all capabilities dropped, no-new-privileges, non-root
 * user, nofile/fsize ulimits, IPC objects that cannot outlive their processes, empty Env.
 * stdin stays open only while the executor is attached (StdinOnce), and AutoRemove deletes the
 * container when the fork server exits: an executor that dies leaves no running sandbox.
 */
export function sandboxContainerSpec(opts: {
  image: string;
  owner: string;
  limits: ContainerLimits;
  pid?: number;
  host?: string;
}): Docker.ContainerCreateOptions {
  const l = opts.limits;
  const memory = l.memory_mb * 1024 * 1024;
  const fsize = l.file_size_mb * 1024 * 1024;
  return {
    Image: opts.image,
    Cmd: ["/usr/bin/python3", "-I", SANDBOX_HARNESS_PATH],
    User: `${SANDBOX_UID}:${SANDBOX_UID}`,
    WorkingDir: "/tmp",
    Env: [],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    NetworkDisabled: true,
    Labels: {
      [SANDBOX_LABEL]: "1",
      [SANDBOX_OWNER_LABEL]: opts.owner,
      [SANDBOX_HOST_LABEL]: opts.host ?? hostname(),
      [SANDBOX_PID_LABEL]: String(opts.pid ?? process.pid),
    },
    HostConfig: {
      AutoRemove: true,
      NetworkMode: "none",
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: Math.round(l.cpus * 1e9),
      PidsLimit: l.pids,
      ReadonlyRootfs: true,
      Tmpfs: { "/tmp": `rw,noexec,nosuid,nodev,size=${l.tmpfs_mb}m,uid=${SANDBOX_UID},gid=${SANDBOX_UID},mode=0700` },
      ShmSize: 1024 * 1024,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      IpcMode: "private",
      Ulimits: [
        { Name: "nofile", Soft: l.open_files, Hard: l.open_files },
        { Name: "fsize", Soft: fsize, Hard: fsize },
        { Name: "core", Soft: 0, Hard: 0 },
      ],
      // SysV shared memory dies with its last user; no message queues or semaphores at all.
      Sysctls: { "kernel.shm_rmid_forced": "1", "kernel.msgmni": "0", "kernel.sem": "0 0 0 0", "fs.mqueue.queues_max": "0" },
      // stdout is the judge's protocol channel; nothing is worth logging to disk.
      LogConfig: { Type: "none", Config: {} },
    },
  };
}

/** One sandbox container whose PID 1 is the fork server; runs one request at a time. */
export class DockerSandbox {
  private readonly conn: ForkServerConnection;

  private constructor(
    readonly container: Docker.Container,
    private readonly stream: Duplex,
  ) {
    this.conn = new ForkServerConnection((frame) => this.stream.write(frame));
    const demux = new DockerStreamDemuxer(
      (chunk) => this.conn.onStdout(chunk),
      (chunk) => this.conn.onStderr(chunk),
    );
    stream.on("data", (chunk: Buffer) => demux.push(chunk));
    stream.on("error", (err: Error) => this.conn.fail(new SandboxError(`sandbox stream error: ${err.message}`)));
    stream.on("close", () => this.conn.fail(new SandboxError("sandbox stream closed")));
    stream.on("end", () => this.conn.fail(new SandboxError("sandbox stream ended")));
  }

  /** Creates, attaches and starts a container; resolves once the fork server is ready. */
  static async start(opts: DockerSandboxOptions): Promise<DockerSandbox> {
    const spec = sandboxContainerSpec({
      image: opts.image ?? SANDBOX_IMAGE,
      owner: opts.owner,
      limits: opts.limits ?? DEFAULT_CONTAINER_LIMITS,
    });
    let container: Docker.Container | undefined;
    try {
      container = await opts.docker.createContainer(spec);
      const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as Duplex;
      const sandbox = new DockerSandbox(container, stream);
      const ready = sandbox.conn.waitReady(opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      await container.start();
      await ready;
      return sandbox;
    } catch (err) {
      if (container) await removeQuietly(container);
      if (err instanceof SandboxError) throw err;
      throw new SandboxError(`cannot start sandbox container: ${(err as Error).message}`);
    }
  }

  get id(): string {
    return this.container.id;
  }

  /** False once the container misbehaved or died; it must then be destroyed. */
  get healthy(): boolean {
    return this.conn.healthy;
  }

  /**
   * Sends one request; resolves with the judge's response. Rejects with SandboxError (and the
   * sandbox turns unhealthy) when the container dies or does not answer within `watchdogMs`.
   */
  run(req: SandboxRequest, watchdogMs: number): Promise<SandboxResponse> {
    return this.conn.run(req, watchdogMs);
  }

  /** Kills and removes the container (idempotent). */
  async destroy(): Promise<void> {
    this.conn.fail(new SandboxError("sandbox destroyed"));
    this.stream.destroy();
    await removeQuietly(this.container);
  }
}

async function removeQuietly(container: Docker.Container): Promise<void> {
  try {
    await container.remove({ force: true });
  } catch (err) {
    const code = (err as { statusCode?: number }).statusCode;
    if (code !== 404 && code !== 409) throw err;
  }
}

/** A labelled container still in "created" state younger than this may be starting right now. */
export const CREATED_GRACE_S = 60;

/**
 * Removes sandbox containers left by dead executors: labelled containers that exited, that were
 * created but never started (after `createdGraceS`, since another executor may be starting
 * one), and running ones started on this host by a process that no longer exists. (Running
 * sandboxes of a dead executor also end by themselves: their stdin closes with the attach.)
 * Returns how many were removed.
 */
export async function reapOrphanSandboxes(docker: Docker, opts: { host?: string; createdGraceS?: number } = {}): Promise<number> {
  const host = opts.host ?? hostname();
  const grace = opts.createdGraceS ?? CREATED_GRACE_S;
  const list = await docker.listContainers({ all: true, filters: { label: [`${SANDBOX_LABEL}=1`] } });
  const now = Date.now() / 1000;
  let removed = 0;
  for (const info of list) {
    const labels = info.Labels ?? {};
    const pid = Number(labels[SANDBOX_PID_LABEL]);
    const ownerGone = labels[SANDBOX_HOST_LABEL] === host && Number.isInteger(pid) && !processAlive(pid);
    const orphan =
      info.State === "exited" ||
      info.State === "dead" ||
      (info.State === "created" && (now - info.Created > grace || ownerGone)) ||
      (info.State === "running" && ownerGone);
    if (!orphan) continue;
    await removeQuietly(docker.getContainer(info.Id));
    removed++;
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Throws a SandboxError naming the fix when the sandbox image is missing, or when its harness
 * differs from the harness sources next to this code (a stale image would judge with old code).
 */
export async function assertSandboxImage(docker: Docker, image: string = SANDBOX_IMAGE): Promise<void> {
  let info: Docker.ImageInspectInfo;
  try {
    info = await docker.getImage(image).inspect();
  } catch (err) {
    const code = (err as { statusCode?: number }).statusCode;
    if (code === 404) throw new SandboxError(`sandbox image ${image} is missing: run deploy/sandbox/build-image.sh`);
    throw new SandboxError(`cannot reach Docker to check ${image}: ${(err as Error).message}`);
  }
  const want = harnessSourceSha();
  const have = info.Config?.Labels?.[HARNESS_SHA_LABEL];
  if (want !== undefined && have !== want) {
    throw new SandboxError(`sandbox image ${image} has a stale harness (${have ?? "none"} != ${want}): run deploy/sandbox/build-image.sh`);
  }
}
