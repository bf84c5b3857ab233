import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ContainerLimits } from "./sandbox-limits.js";

/**
 * How the bwrap backend bounds a whole sandbox (every process in it together):
 *  - "v2": one cgroup v2 leaf per sandbox (memory.max, memory.swap.max 0, pids.max, cpu.max)
 *    under a subtree this executor can write (its own cgroup, or RLMESH_BWRAP_CGROUP_PARENT);
 *  - "v1": the same with the cgroup v1 memory, pids and cpu hierarchies (hybrid hosts);
 *  - "rlimits": no writable cgroups. Only per-process limits: the harness's per-candidate
 *    RLIMIT_AS/CPU/FSIZE/NOFILE, plus RLIMIT_NPROC set by the fork server for the sandbox's own
 *    user namespace (bounds processes, not their total memory or CPU share).
 */
export type CgroupMode = "v2" | "v1" | "rlimits";

/** Controllers used per mode. */
const V1_CONTROLLERS = ["memory", "pids", "cpu"] as const;
const V2_CONTROLLERS = ["memory", "pids", "cpu"] as const;
export const CGROUP_ROOT = "/sys/fs/cgroup";
const DIR_PREFIX = "rlmesh-bwrap-";
const CPU_PERIOD_US = 100_000;

/** One sandbox's cgroup(s). */
export interface SandboxCgroup {
  /** Moves a process (and so everything it forks later) into the sandbox's cgroup(s). */
  addPid(pid: number): void;
  /** Host file holding the OOM-kill counter, bound read-only into the sandbox, and where. */
  readonly oomCounter?: { host: string; inside: string };
  /** SIGKILLs whatever is still in it, then removes it (best effort, idempotent). */
  remove(): Promise<void>;
}

/** Parsed /proc/self/cgroup: hierarchy id 0 is v2, others map a controller list to a path. */
export function ownCgroups(text: string = readFileSync("/proc/self/cgroup", "utf8")): { v2?: string; v1: Map<string, string> } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") v2 = m[3]!;
    else for (const c of m[2]!.split(",")) if (c) v1.set(c, m[3]!);
  }
  return v2 === undefined ? { v1 } : { v2, v1 };
}

function write(path: string, value: string): void {
  writeFileSync(path, value);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killAllIn(dir: string): number {
  let n = 0;
  let procs: string[] = [];
  try {
    procs = readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
  } catch {
    return 0;
  }
  for (const p of procs) {
    try {
      process.kill(Number(p), "SIGKILL");
      n++;
    } catch {
      // gone already
    }
  }
  return n;
}

/** rmdir with retries: a cgroup is busy until its last process is reaped. */
async function removeDir(dir: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (!existsSync(dir)) return;
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await removeDir(join(dir, e.name));
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      killAllIn(dir);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Removes cgroups left by executors that are gone (`rlmesh-bwrap-<pid>` whose pid is dead). */
async function reapStale(parent: string): Promise<number> {
  let removed = 0;
  let entries: string[] = [];
  try {
    entries = readdirSync(parent).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return 0;
  }
  for (const e of entries) {
    const pid = Number(e.slice(DIR_PREFIX.length).split("-")[0]);
    if (!Number.isInteger(pid) || processAlive(pid)) continue;
    const dir = join(parent, e);
    for (const sub of readdirSync(dir, { withFileTypes: true })) if (sub.isDirectory()) killAllIn(join(dir, sub.name));
    await removeDir(dir);
    removed++;
  }
  return removed;
}

/** The cgroup side of a bwrap backend: set up once per executor, one leaf per sandbox. */
export class SandboxCgroups {
  private seq = 0;

  private constructor(
    readonly mode: CgroupMode,
    /** Why this mode (what was tried and failed), for the start-up log. */
    readonly reason: string,
    /** Per-controller base directories this executor owns ("" key for v2). */
    private readonly bases: Map<string, string>,
    private readonly limits: ContainerLimits,
    readonly reaped: number,
  ) {}

  /**
   * Finds a writable cgroup subtree: v2 first (the unified hierarchy at /sys/fs/cgroup, or
   * `parent` when given), then v1; else "rlimits" with the reasons. Never throws.
   */
  static async open(limits: ContainerLimits, opts: { parent?: string; root?: string; tag?: string } = {}): Promise<SandboxCgroups> {
    const root = opts.root ?? CGROUP_ROOT;
    const tag = `${DIR_PREFIX}${process.pid}-${opts.tag ?? Math.random().toString(36).slice(2, 8)}`;
    const reasons: string[] = [];
    let own: ReturnType<typeof ownCgroups>;
    try {
      own = ownCgroups();
    } catch (err) {
      return new SandboxCgroups("rlimits", `cannot read /proc/self/cgroup: ${(err as Error).message}`, new Map(), limits, 0);
    }
    // cgroup v2: the unified hierarchy must offer memory, pids and cpu.
    const v2Root = existsSync(join(root, "cgroup.controllers")) ? root : undefined;
    const v2Parent = opts.parent ?? (v2Root && own.v2 !== undefined ? join(v2Root, own.v2) : undefined);
    if (v2Parent) {
      try {
        const have = readFileSync(join(v2Parent, "cgroup.controllers"), "utf8").trim().split(/\s+/);
        const missing = V2_CONTROLLERS.filter((c) => !have.includes(c));
        if (missing.length) throw new Error(`controllers ${missing.join(",")} not available in ${v2Parent}`);
        const reaped = await reapStale(v2Parent);
        write(join(v2Parent, "cgroup.subtree_control"), V2_CONTROLLERS.map((c) => `+${c}`).join(" "));
        const base = join(v2Parent, tag);
        mkdirSync(base);
        write(join(base, "cgroup.subtree_control"), V2_CONTROLLERS.map((c) => `+${c}`).join(" "));
        return new SandboxCgroups("v2", `cgroup v2 under ${base}`, new Map([["", base]]), limits, reaped);
      } catch (err) {
        reasons.push(`cgroup v2: ${(err as Error).message}`);
      }
    } else {
      reasons.push("cgroup v2: no unified hierarchy with controllers at " + root);
    }
    // cgroup v1: memory, pids and cpu hierarchies, each under this process's own cgroup.
    const bases = new Map<string, string>();
    let reaped = 0;
    try {
      for (const c of V1_CONTROLLERS) {
        const path = own.v1.get(c);
        if (path === undefined) throw new Error(`no v1 ${c} hierarchy`);
        const parent = join(root, c, path);
        if (!existsSync(parent)) throw new Error(`${parent} missing`);
        reaped += await reapStale(parent);
        const base = join(parent, tag);
        mkdirSync(base);
        bases.set(c, base);
      }
      return new SandboxCgroups("v1", `cgroup v1 under ${[...bases.values()].join(", ")}`, bases, limits, reaped);
    } catch (err) {
      reasons.push(`cgroup v1: ${(err as Error).message}`);
      for (const b of bases.values()) await removeDir(b);
    }
    return new SandboxCgroups("rlimits", `no writable cgroup (${reasons.join("; ")})`, new Map(), limits, 0);
  }

  /** A fresh cgroup (per controller) for one sandbox; undefined in "rlimits" mode. */
  create(): SandboxCgroup | undefined {
    if (this.mode === "rlimits") return undefined;
    const name = `sb-${++this.seq}`;
    const l = this.limits;
    const mem = String(l.memory_mb * 1024 * 1024);
    const dirs: string[] = [];
    try {
      if (this.mode === "v2") {
        const dir = join(this.bases.get("")!, name);
        mkdirSync(dir);
        dirs.push(dir);
        write(join(dir, "memory.max"), mem);
        if (existsSync(join(dir, "memory.swap.max"))) write(join(dir, "memory.swap.max"), "0");
        write(join(dir, "pids.max"), String(l.pids));
        write(join(dir, "cpu.max"), `${Math.round(l.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
        return leaf(dirs, { host: join(dir, "memory.events"), inside: "/sys/fs/cgroup/memory.events" });
      }
      const m = join(this.bases.get("memory")!, name);
      const p = join(this.bases.get("pids")!, name);
      const c = join(this.bases.get("cpu")!, name);
      for (const d of [m, p, c]) {
        mkdirSync(d);
        dirs.push(d);
      }
      write(join(m, "memory.limit_in_bytes"), mem);
      if (existsSync(join(m, "memory.memsw.limit_in_bytes"))) write(join(m, "memory.memsw.limit_in_bytes"), mem);
      write(join(p, "pids.max"), String(l.pids));
      write(join(c, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      write(join(c, "cpu.cfs_quota_us"), String(Math.round(l.cpus * CPU_PERIOD_US)));
      return leaf(dirs, { host: join(m, "memory.oom_control"), inside: "/sys/fs/cgroup/memory/memory.oom_control" });
    } catch (err) {
      void Promise.all(dirs.map(removeDir));
      throw err;
    }
  }

  /** Removes this executor's cgroups (sandboxes must be destroyed first). */
  async close(): Promise<void> {
    await Promise.all([...this.bases.values()].map(removeDir));
  }
}

function leaf(dirs: string[], oomCounter: { host: string; inside: string }): SandboxCgroup {
  let removed: Promise<void> | undefined;
  return {
    oomCounter,
    addPid(pid: number) {
      for (const d of dirs) write(join(d, "cgroup.procs"), String(pid));
    },
    remove() {
      return (removed ??= (async () => {
        for (const d of dirs) killAllIn(d);
        await Promise.all(dirs.map(removeDir));
      })());
    },
  };
}
