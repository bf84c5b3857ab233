import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { ForkServerConnection } from "./fork-server-connection.js";
import { SandboxError } from "./sandbox-error.js";
import { HARNESS_SOURCE_DIR, SANDBOX_UID } from "./sandbox-image.js";
import { type ContainerLimits, DEFAULT_CONTAINER_LIMITS } from "./sandbox-limits.js";
import type { SandboxCgroup, SandboxCgroups } from "./sandbox-cgroup.js";
import type { SandboxRequest, SandboxResponse } from "./sandbox-protocol.js";

/** Debian's bubblewrap. */
export const DEFAULT_BWRAP = "/usr/bin/bwrap";
/** The interpreter the harness runs on (bound read-only with the rest of the host's /usr). */
export const BWRAP_PYTHON = "/usr/bin/python3";
/** Where the staged harness appears inside the sandbox (same path as in the Docker image). */
export const BWRAP_HARNESS_DIR = "/opt/rlmesh/harness";
/**
 * Host uid the sandbox runs as when the executor is root: bwrap is started under it, so every
 * sandbox process is this unprivileged uid to the host kernel (no capabilities, and exempt from
 * nothing root is exempt from). Owns no files; the Docker sandboxes use SANDBOX_UID.
 */
export const DEFAULT_BWRAP_HOST_UID = SANDBOX_UID + 1;
/** Time the fork server gets to report ready after bwrap starts. */
export const BWRAP_START_TIMEOUT_MS = 20_000;
/** Size of the sandbox's /dev/shm (Docker's ShmSize). */
const SHM_BYTES = 1 << 20;
/** Top-level host paths that may be symlinks into /usr (merged-/usr Debian) or directories. */
const ROOT_LINKS = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/**
 * A read-only snapshot of what the sandbox may see besides the host's /usr: the harness
 * (`harness/*.py`) and a minimal /etc (passwd/group naming the sandbox user). Root-owned, 0755
 * directories and 0444 files in a fresh directory under the host's temp dir; nothing of the
 * repository but these files is bound into a sandbox.
 */
export function stageBwrapRoot(harnessDir: string = HARNESS_SOURCE_DIR): string {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-bwrap-root-"));
  chmodSync(dir, 0o755);
  const h = join(dir, "harness");
  const etc = join(dir, "etc");
  mkdirSync(h, { mode: 0o755 });
  mkdirSync(etc, { mode: 0o755 });
  const files = readdirSync(harnessDir).filter((f) => f.endsWith(".py"));
  if (!files.includes("fork_server.py")) throw new SandboxError(`no fork_server.py in ${harnessDir}`);
  for (const f of files) {
    copyFileSync(join(harnessDir, f), join(h, f));
    chmodSync(join(h, f), 0o444);
  }
  const u = SANDBOX_UID;
  writeFileSync(join(etc, "passwd"), `root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:${u}:${u}:sandbox:/tmp:/usr/sbin/nologin\n`, { mode: 0o444 });
  writeFileSync(join(etc, "group"), `root:x:0:\nsandbox:x:${u}:\n`, { mode: 0o444 });
  chmodSync(h, 0o555);
  chmodSync(etc, 0o555);
  return dir;
}

export interface BwrapArgsOptions {
  /** From stageBwrapRoot. */
  stagedRoot: string;
  limits: ContainerLimits;
  /** A cgroup OOM-kill counter to bind read-only (the fork server reports `memory` with it). */
  oomCounter?: { host: string; inside: string };
  /** RLIMIT_NPROC the fork server sets for the sandbox (rlimits mode: no pids cgroup). */
  nproc?: number;
  /** fds of bwrap's --info-fd / --block-fd. @defaultValue 3, 4 */
  infoFd?: number;
  blockFd?: number;
  /** How host top-level paths look (tests pass a fake). @defaultValue lstat of the host */
  rootEntry?: (path: string) => { link: string } | "dir" | undefined;
}

function hostRootEntry(path: string): { link: string } | "dir" | undefined {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return { link: readlinkSync(path) };
    return st.isDirectory() ? "dir" : undefined;
  } catch {
    return undefined;
  }
}

/**
 * bwrap's argument list for one sandbox. Pure, so the isolation is reviewable in one place and
 * unit-tested: every namespace bwrap has (user, mount, pid, net, ipc, uts, cgroup), no nested
 * user namespaces, the fork server as PID 1 of the new pid namespace, uid/gid 10001 inside, no
 * capabilities, no environment; a read-only root of the host's /usr (plus its /bin, /lib*
 * symlinks), the staged harness and /etc files; a fresh /proc, a minimal /dev, a private 0700
 * tmpfs /tmp and a 1 MiB /dev/shm; / and /dev remounted read-only; killed with the executor.
 */
export function bwrapArgs(o: BwrapArgsOptions): string[] {
  const l = o.limits;
  const entry = o.rootEntry ?? hostRootEntry;
  const a = ["--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent", "--new-session"];
  a.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID), "--hostname", "sandbox", "--cap-drop", "ALL", "--clearenv");
  a.push("--ro-bind", "/usr", "/usr");
  for (const p of ROOT_LINKS) {
    const e = entry(p);
    if (e === "dir") a.push("--ro-bind", p, p);
    else if (e) a.push("--symlink", e.link, p);
  }
  a.push("--ro-bind", join(o.stagedRoot, "etc/passwd"), "/etc/passwd");
  a.push("--ro-bind", join(o.stagedRoot, "etc/group"), "/etc/group");
  a.push("--ro-bind", join(o.stagedRoot, "harness"), BWRAP_HARNESS_DIR);
  a.push("--proc", "/proc", "--dev", "/dev");
  a.push("--perms", "0700", "--size", String(l.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp");
  a.push("--perms", "0700", "--size", String(SHM_BYTES), "--tmpfs", "/dev/shm");
  if (o.oomCounter) a.push("--ro-bind", o.oomCounter.host, o.oomCounter.inside);
  a.push("--remount-ro", "/dev", "--remount-ro", "/");
  a.push("--chdir", "/tmp", "--info-fd", String(o.infoFd ?? 3), "--block-fd", String(o.blockFd ?? 4));
  a.push("--", BWRAP_PYTHON, "-I", `${BWRAP_HARNESS_DIR}/fork_server.py`);
  if (o.nproc !== undefined) a.push("--nproc", String(o.nproc));
  return a;
}

export interface BwrapSandboxOptions {
  stagedRoot: string;
  /** @defaultValue DEFAULT_CONTAINER_LIMITS */
  limits?: ContainerLimits;
  /** Per-sandbox cgroups; without them (rlimits mode) the fork server sets RLIMIT_NPROC. */
  cgroups?: SandboxCgroups;
  /** Host uid/gid to start bwrap as; only used when the executor is root. */
  hostUid?: number;
  /** @defaultValue DEFAULT_BWRAP */
  bwrap?: string;
  /** @defaultValue BWRAP_START_TIMEOUT_MS */
  startTimeoutMs?: number;
}

/** Reads bwrap's --info-fd JSON ({"child-pid": N, ...}): the host pid of the sandbox's PID 1. */
function readChildPid(stream: Readable, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => done(new SandboxError(`bwrap reported no child pid within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | null, pid?: number) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      if (err) reject(err);
      else resolve(pid!);
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8");
      try {
        const pid = (JSON.parse(text) as { "child-pid"?: unknown })["child-pid"];
        if (typeof pid === "number" && Number.isInteger(pid) && pid > 0) done(null, pid);
      } catch {
        // incomplete JSON: wait for more
      }
    };
    const onEnd = () => done(new SandboxError("bwrap exited before it started the sandbox"));
    stream.on("data", onData);
    stream.on("end", onEnd);
  });
}

/** A bwrap sandbox whose PID 1 is the fork server; runs one request at a time. */
export class BwrapSandbox {
  private readonly conn: ForkServerConnection;
  private exited: Promise<void>;
  private childPid = 0;
  private stderrText = "";

  private constructor(
    private readonly proc: ChildProcess,
    private readonly cgroup: SandboxCgroup | undefined,
  ) {
    const stdin = proc.stdin!;
    this.conn = new ForkServerConnection((frame) => stdin.write(frame));
    stdin.on("error", (err: Error) => this.conn.fail(new SandboxError(`sandbox stdin error: ${err.message}`)));
    proc.stdout!.on("data", (chunk: Buffer) => this.conn.onStdout(chunk));
    proc.stderr!.on("data", (chunk: Buffer) => {
      this.stderrText = (this.stderrText + chunk.toString("utf8")).slice(-2000);
      this.conn.onStderr(chunk);
    });
    this.exited = new Promise((resolve) => {
      proc.on("exit", (code, signal) => {
        this.conn.fail(new SandboxError(`bwrap exited (${signal ?? `code ${code}`})`));
        resolve();
      });
      proc.on("error", (err) => {
        this.conn.fail(new SandboxError(`cannot run bwrap: ${err.message}`));
        resolve();
      });
    });
  }

  /** Starts bwrap, moves its PID 1 into the sandbox's cgroup before it runs anything, waits for ready. */
  static async start(opts: BwrapSandboxOptions): Promise<BwrapSandbox> {
    const limits = opts.limits ?? DEFAULT_CONTAINER_LIMITS;
    const cgroup = opts.cgroups?.create();
    const args = bwrapArgs({
      stagedRoot: opts.stagedRoot,
      limits,
      ...(cgroup?.oomCounter ? { oomCounter: cgroup.oomCounter } : {}),
      ...(cgroup ? {} : { nproc: limits.pids }),
    });
    const asRoot = process.getuid?.() === 0;
    const hostUid = opts.hostUid ?? DEFAULT_BWRAP_HOST_UID;
    const proc = spawn(opts.bwrap ?? DEFAULT_BWRAP, args, {
      stdio: ["pipe", "pipe", "pipe", "pipe", "pipe"],
      env: {},
      cwd: "/",
      ...(asRoot ? { uid: hostUid, gid: hostUid } : {}),
    });
    const sandbox = new BwrapSandbox(proc, cgroup);
    const timeout = opts.startTimeoutMs ?? BWRAP_START_TIMEOUT_MS;
    try {
      const ready = sandbox.conn.waitReady(timeout);
      ready.catch(() => undefined);
      const pid = await Promise.race([
        readChildPid(proc.stdio[3] as Readable, timeout),
        sandbox.exited.then(() => Promise.reject(new SandboxError(`bwrap exited at start: ${sandbox.stderrText.trim()}`))),
      ]);
      sandbox.childPid = pid;
      cgroup?.addPid(pid);
      (proc.stdio[4] as Writable).end("x");
      await ready;
      return sandbox;
    } catch (err) {
      await sandbox.destroy();
      if (err instanceof SandboxError) throw err;
      throw new SandboxError(`cannot start bwrap sandbox: ${(err as Error).message}`);
    }
  }

  get id(): string {
    return `bwrap-${this.proc.pid ?? 0}`;
  }

  /** Host pid of the sandbox's PID 1 (the fork server); 0 before it started. */
  get pid1(): number {
    return this.childPid;
  }

  get healthy(): boolean {
    return this.conn.healthy;
  }

  run(req: SandboxRequest, watchdogMs: number): Promise<SandboxResponse> {
    return this.conn.run(req, watchdogMs);
  }

  /**
   * Kills the sandbox (idempotent): SIGKILL to its PID 1 ends the whole pid namespace, SIGKILL to
   * bwrap too; then the cgroup is emptied and removed.
   */
  async destroy(): Promise<void> {
    this.conn.fail(new SandboxError("sandbox destroyed"));
    for (const pid of [this.childPid, this.proc.pid]) {
      if (!pid) continue;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const s of this.proc.stdio) s?.destroy();
    if (this.proc.exitCode === null && this.proc.signalCode === null && this.proc.pid) await this.exited;
    await this.cgroup?.remove();
  }
}

/**
 * Fails with a SandboxError that names the fix when bwrap cannot build a sandbox here: not
 * installed, or user namespaces unavailable (sysctl, container seccomp profile).
 */
export async function assertBwrapWorks(stagedRoot: string, opts: { bwrap?: string; hostUid?: number } = {}): Promise<void> {
  const bwrap = opts.bwrap ?? DEFAULT_BWRAP;
  if (!existsSync(bwrap)) throw new SandboxError(`${bwrap} is missing: apt-get install bubblewrap (scripts/setup.sh does)`);
  if (!existsSync(BWRAP_PYTHON)) throw new SandboxError(`${BWRAP_PYTHON} is missing: the bwrap sandbox runs the host's python3`);
  const args = bwrapArgs({ stagedRoot, limits: DEFAULT_CONTAINER_LIMITS }).filter((a, i, all) => {
    // No info/block fds for the probe.
    return !["--info-fd", "--block-fd"].includes(a) && !["--info-fd", "--block-fd"].includes(all[i - 1] ?? "");
  });
  const cut = args.indexOf("--");
  const probe = [...args.slice(0, cut), "--", BWRAP_PYTHON, "-I", "-c", "import os; print(os.getpid(), os.getuid())"];
  const asRoot = process.getuid?.() === 0;
  const uid = opts.hostUid ?? DEFAULT_BWRAP_HOST_UID;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(bwrap, probe, { env: {}, cwd: "/", timeout: 15_000, ...(asRoot ? { uid, gid: uid } : {}) }, (err, stdout, stderr) => {
      if (err) reject(new SandboxError(`bwrap cannot create a sandbox here (${stderr.trim() || err.message}); it needs user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, and a container seccomp profile that allows clone/unshare)`));
      else resolve(stdout.trim());
    });
  });
  if (out !== `1 ${SANDBOX_UID}`) throw new SandboxError(`bwrap probe ran as pid/uid "${out}", expected "1 ${SANDBOX_UID}"`);
}

/** Removes a staged root (idempotent). */
export function removeStagedRoot(dir: string): void {
  for (const sub of ["harness", "etc"]) {
    try {
      chmodSync(join(dir, sub), 0o755);
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
