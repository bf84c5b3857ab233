import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./net.js";

export interface LocalRedis {
  url: string;
  port: number;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its directory unless `keepDir`. */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL (for fault tests), keeping its directory. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (AOF data survives). */
  restart(): Promise<void>;
  dir: string;
}

export interface LocalRedisOptions {
  /** Append-only file on (for crash tests and the local mesh). @defaultValue false */
  appendOnly?: boolean;
  /** Data directory. @defaultValue a fresh temporary folder */
  dir?: string;
  /** @defaultValue "redis-server" on PATH */
  binary?: string;
  /**
   * When the append-only file is fsynced (with `appendOnly`). `always`: a write is in the file
   * before Redis acknowledges it, so a killed redis-server (OOM, SIGKILL) loses nothing a service
   * was told was stored. `everysec` is faster but under a busy disk Redis holds the AOF buffer in
   * memory for up to 2 s, and a kill loses writes it already acknowledged (a recorded step, its
   * event). @defaultValue RLMESH_REDIS_APPENDFSYNC, else "always"
   */
  appendFsync?: AppendFsync;
}

/** The AOF fsync policies a private redis-server may run with. */
export const APPEND_FSYNC_POLICIES = ["always", "everysec"] as const;
export type AppendFsync = (typeof APPEND_FSYNC_POLICIES)[number];

/** The fsync policy from RLMESH_REDIS_APPENDFSYNC (default always); anything else is an error naming it. */
export function appendFsyncFromEnv(env: NodeJS.ProcessEnv = process.env): AppendFsync {
  const v = env.RLMESH_REDIS_APPENDFSYNC;
  if (v === undefined || v === "") return "always";
  if (!(APPEND_FSYNC_POLICIES as readonly string[]).includes(v)) {
    throw new RedisServerError(`RLMESH_REDIS_APPENDFSYNC must be one of ${APPEND_FSYNC_POLICIES.join(", ")}, got "${v}"`);
  }
  return v as AppendFsync;
}

/** Thrown when redis-server cannot be started (e.g. not installed). */
export class RedisServerError extends Error {
  override name = "RedisServerError";
}

/**
 * Starts a private redis-server on a free loopback port. Tests and `rlmesh up` use it when no
 * REDIS_URL is given; it fails loudly when redis-server is not installed.
 */
export async function startLocalRedis(opts: LocalRedisOptions = {}): Promise<LocalRedis> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "rlmesh-redis-"));
  const ownDir = !opts.dir;
  const port = await freePort();
  const binary = opts.binary ?? "redis-server";
  const appendFsync = opts.appendFsync ?? appendFsyncFromEnv();
  let proc: ChildProcess;

  const launch = async () => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      opts.appendOnly ? "yes" : "no",
      "--appendfsync",
      appendFsync,
      "--maxmemory-policy",
      "noeviction",
      "--protected-mode",
      "yes",
    ];
    proc = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const spawnError = new Promise<never>((_, reject) =>
      proc.once("error", (err) =>
        reject(new RedisServerError(`cannot start ${binary}: ${err.message} (install it: apt-get install redis-server)`)),
      ),
    );
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new RedisServerError(`${binary} exited with code ${code}: ${stderr.trim()}`))),
    );
    await Promise.race([waitForPing(port), spawnError, exited]);
  };
  await launch();

  const terminate = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      proc.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      proc.kill(signal);
    });

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get process() {
      return proc;
    },
    stop: async () => {
      await terminate("SIGTERM");
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
    kill: () => terminate("SIGKILL"),
    restart: launch,
  };
}

async function waitForPing(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => undefined);
    try {
      await r.connect();
      if ((await r.ping()) === "PONG") return;
    } catch {
      // not up yet
    } finally {
      r.disconnect();
    }
    if (Date.now() > deadline) throw new RedisServerError(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
