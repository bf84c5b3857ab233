import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { checkHealth, createRedis, freePort, startLocalRedis, type LocalRedis } from "@rlmesh/shared";
import { JobStore } from "@rlmesh/api/job-store";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const READY_TIMEOUT_MS = 120_000;

/**
 * How `rlmesh up` supervises its services: a service that exits (crash, SIGKILL, OOM) is
 * started again after a backoff (first delay, doubling, capped), unless it died more than
 * `maxRestarts` times within `windowMs` (a crash loop: it is left down and the give-up is logged
 * and told to the running jobs). A service that stayed up for `windowMs` starts a fresh count.
 */
export interface SupervisionPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
  maxRestarts: number;
  windowMs: number;
}
export const SUPERVISION: Readonly<SupervisionPolicy> = Object.freeze({ firstDelayMs: 1000, maxDelayMs: 30_000, maxRestarts: 5, windowMs: 120_000 });

/** The fixed ports of `rlmesh up` (rollout i and executor i add i); demo, bench rl and tests pick free ports. */
export const UP_PORTS = Object.freeze({
  api: 50051,
  apiMetrics: 9451,
  rollout: 50061,
  rolloutMetrics: 9461,
  learner: 50071,
  learnerMetrics: 9471,
  executorMetrics: 9481,
});

/** `up`'s ports in words, for its --help and start-up banner. */
export function describeUpPorts(rollouts = 1, executors = 1): string {
  const span = (base: number, n: number) => (n > 1 ? `${base}-${base + n - 1}` : `${base}`);
  return [
    `api gRPC 127.0.0.1:${UP_PORTS.api} (metrics :${UP_PORTS.apiMetrics})`,
    `rollout gRPC :${span(UP_PORTS.rollout, rollouts)} (metrics :${span(UP_PORTS.rolloutMetrics, rollouts)})`,
    `learner gRPC :${UP_PORTS.learner} (metrics :${UP_PORTS.learnerMetrics})`,
    `executor metrics :${span(UP_PORTS.executorMetrics, executors)}`,
  ].join("; ");
}

export interface MeshOptions {
  rollouts: number;
  executors: number;
  modelDir: string;
  /** Use this Redis instead of starting a private redis-server. */
  redisUrl?: string;
  /** Fixed well-known ports (for `rlmesh up`) instead of free ones. */
  fixedPorts: boolean;
  /** Folder for service logs and checkpoints. */
  stateDir: string;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Threads per onnxruntime session in each rollout worker. */
  ortThreads?: number;
  log?: (line: string) => void;
  /** Restart services that exit (default true); `kill()` always holds a service down until `restart()`. */
  supervise?: boolean;
  /** Override SUPERVISION (tests). */
  supervision?: Partial<SupervisionPolicy>;
}

export interface MeshProcess {
  name: string;
  proc: ChildProcess;
  grpcAddr?: string;
  metricsPort: number;
  logFile: string;
}

export interface LocalMesh {
  redisUrl: string;
  apiAddr: string;
  learnerAddr: string;
  processes: MeshProcess[];
  /**
   * The private redis-server (absent with opts.redisUrl). It is supervised like the services: when
   * it dies the mesh restarts it (same port, same AOF directory) with backoff and a crash-loop
   * limit. Its stop()/kill() here hold it down until its restart() (fault tests).
   */
  redis?: LocalRedis;
  /** Metrics endpoints, for Prometheus. */
  metricsTargets(): string[];
  /** Stops every service (SIGTERM, then SIGKILL after the grace period) and the private Redis. */
  stop(): Promise<void>;
  /** Kills one process with a signal (fault tests) and returns its exit. */
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed process again with the same settings. */
  restart(name: string): Promise<MeshProcess>;
  /** Restarts done by the supervisor so far, per service. */
  restarts(): Record<string, number>;
}

/**
 * Brings up the whole mesh as local processes: Redis (private unless given), learner,
 * rollout workers, executors and the api; resolves once every gRPC server reports SERVING and
 * every executor answers on /healthz.
 */
export async function startLocalMesh(opts: MeshOptions): Promise<LocalMesh> {
  const log = opts.log ?? (() => undefined);
  mkdirSync(join(opts.stateDir, "logs"), { recursive: true });
  let redis: LocalRedis | undefined;
  let redisUrl = opts.redisUrl;
  if (!redisUrl) {
    redis = await startLocalRedis({ appendOnly: true, dir: mkdirP(join(opts.stateDir, "redis")) });
    redisUrl = redis.url;
    log(`redis-server ${redisUrl} (AOF in ${redis.dir})`);
  }
  const port = async (fixed: number) => (opts.fixedPorts ? fixed : await freePort());
  const learnerPort = await port(UP_PORTS.learner);
  const learnerAddr = `127.0.0.1:${learnerPort}`;
  const specs: { name: string; service: string; env: Record<string, string>; grpcAddr?: string; metricsPort: number }[] = [];
  const common = { REDIS_URL: redisUrl, RLMESH_MODEL_DIR: opts.modelDir, RLMESH_LEARNER_ADDR: learnerAddr, ...opts.env };

  const learnerMetrics = await port(UP_PORTS.learnerMetrics);
  specs.push({
    name: "learner",
    service: "learner",
    grpcAddr: learnerAddr,
    metricsPort: learnerMetrics,
    env: {
      RLMESH_LEARNER_PORT: String(learnerPort),
      RLMESH_LEARNER_METRICS_PORT: String(learnerMetrics),
      RLMESH_CHECKPOINT_DIR: join(opts.stateDir, "checkpoints"),
    },
  });
  for (let i = 0; i < opts.rollouts; i++) {
    const p = await port(UP_PORTS.rollout + i);
    const m = await port(UP_PORTS.rolloutMetrics + i);
    specs.push({
      name: `rollout-${i}`,
      service: "rollout",
      grpcAddr: `127.0.0.1:${p}`,
      metricsPort: m,
      env: {
        RLMESH_ROLLOUT_PORT: String(p),
        RLMESH_ROLLOUT_METRICS_PORT: String(m),
        RLMESH_WORKER_ID: `rollout-${i}`,
        ...(opts.ortThreads ? { RLMESH_ORT_THREADS: String(opts.ortThreads) } : {}),
      },
    });
  }
  for (let i = 0; i < opts.executors; i++) {
    const m = await port(UP_PORTS.executorMetrics + i);
    specs.push({
      name: `executor-${i}`,
      service: "executor",
      metricsPort: m,
      env: { RLMESH_EXECUTOR_METRICS_PORT: String(m), RLMESH_EXECUTOR_ID: `executor-${i}` },
    });
  }
  const apiPort = await port(UP_PORTS.api);
  const apiMetrics = await port(UP_PORTS.apiMetrics);
  specs.push({
    name: "api",
    service: "api",
    grpcAddr: `127.0.0.1:${apiPort}`,
    metricsPort: apiMetrics,
    env: { RLMESH_API_PORT: String(apiPort), RLMESH_API_METRICS_PORT: String(apiMetrics) },
  });

  const processes = new Map<string, MeshProcess>();
  const launch = (s: (typeof specs)[number]): MeshProcess => {
    const logFile = join(opts.stateDir, "logs", `${s.name}.log`);
    const out = createWriteStream(logFile, { flags: "a" });
    const proc = spawn(process.execPath, [join(REPO_ROOT, "services", s.service, "dist", "main.js")], {
      env: { ...process.env, ...common, ...s.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout?.pipe(out);
    proc.stderr?.pipe(out);
    const mp: MeshProcess = { name: s.name, proc, metricsPort: s.metricsPort, logFile, ...(s.grpcAddr ? { grpcAddr: s.grpcAddr } : {}) };
    processes.set(s.name, mp);
    proc.once("exit", onExit(s, mp, Date.now()));
    return mp;
  };
  const waitReady = async (mp: MeshProcess) => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (mp.proc.exitCode !== null || mp.proc.signalCode !== null) throw new Error(`${mp.name} exited during start-up; see ${mp.logFile}`);
      const ok = mp.grpcAddr
        ? (await checkHealth(mp.grpcAddr, "", 1000).catch(() => "")) === "SERVING"
        : await fetch(`http://127.0.0.1:${mp.metricsPort}/healthz`).then(
            (r) => r.ok,
            () => false,
          );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${mp.name} not ready after ${READY_TIMEOUT_MS / 1000}s; see ${mp.logFile}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };

  // Supervision: a service that exits while the mesh is up is started again (with backoff and a
  // crash-loop limit); each death and restart is logged and told to the running jobs' events.
  const sup = { ...SUPERVISION, ...opts.supervision };
  const supervise = opts.supervise ?? true;
  let stopping = false;
  const held = new Set<string>(); // killed on purpose by kill(): down until restart()
  const deaths = new Map<string, number[]>(); // exit times within the window
  const restartCount: Record<string, number> = {};
  let eventRedis: Redis | undefined;
  const tellJobs = async (level: string, message: string) => {
    try {
      eventRedis ??= createRedis(redisUrl, { role: "client" });
      const store = new JobStore(eventRedis);
      for (const job of await store.list("JOB_STATE_RUNNING", 100)) await store.appendEvent(job.id, { log: { level, message } });
    } catch (err) {
      log(`supervisor: could not add "${message}" to the jobs' events: ${(err as Error).message}`);
    }
  };
  const supervisorLog = (mp: MeshProcess, line: string) => {
    log(`supervisor: ${line}`);
    try {
      createWriteStream(mp.logFile, { flags: "a" }).end(`${JSON.stringify({ time: new Date().toISOString(), level: "warn", service: "supervisor", msg: line })}\n`);
    } catch {
      // the log folder is gone (the mesh is being removed)
    }
  };
  /**
   * Records a death of `name` (shown as `label`) and decides: restart after `delay` ms (backoff),
   * or give up (`delay` null: more than maxRestarts deaths within the window). One policy for the
   * services and the private Redis.
   */
  const recordDeath = (name: string, label: string, startedAt: number, code: number | null, signal: NodeJS.Signals | null) => {
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    const now = Date.now();
    const recent = (deaths.get(name) ?? []).filter((t) => now - t < sup.windowMs);
    recent.push(now);
    deaths.set(name, recent);
    const died = `${label} exited (${how}) after ${((now - startedAt) / 1000).toFixed(1)} s`;
    if (recent.length > sup.maxRestarts)
      return { delay: null, message: `${died}; it died ${recent.length} times within ${sup.windowMs / 1000} s (crash loop): not restarting it` };
    const delay = Math.min(sup.maxDelayMs, sup.firstDelayMs * 2 ** (recent.length - 1));
    return {
      delay,
      message: `${died}; restarting it in ${delay / 1000} s (restart ${recent.length} of at most ${sup.maxRestarts} within ${sup.windowMs / 1000} s)`,
    };
  };
  const onExit = (s: (typeof specs)[number], mp: MeshProcess, startedAt: number) => (code: number | null, signal: NodeJS.Signals | null) => {
    if (stopping || !supervise || held.has(s.name) || processes.get(s.name) !== mp) return;
    const { delay, message: msg } = recordDeath(s.name, s.name, startedAt, code, signal);
    if (delay === null) {
      supervisorLog(mp, `${msg}; see ${mp.logFile}`);
      void tellJobs("error", `service ${msg}; see ${mp.logFile}`);
      return;
    }
    supervisorLog(mp, msg);
    void tellJobs("warn", `service ${msg}`);
    setTimeout(() => {
      if (stopping || held.has(s.name) || processes.get(s.name) !== mp) return;
      const t0 = Date.now();
      const next = launch(s);
      restartCount[s.name] = (restartCount[s.name] ?? 0) + 1;
      waitReady(next).then(
        () => {
          const back = `${s.name} is back (pid ${next.proc.pid}, ready ${((Date.now() - t0) / 1000).toFixed(1)} s after its restart)`;
          supervisorLog(next, back);
          void tellJobs("info", `service ${back}`);
        },
        // It died again while starting: its own exit handler restarts it (or gives up).
        (err: Error) => supervisorLog(next, `${s.name} did not come back: ${err.message}`),
      );
    }, delay).unref();
  };

  // The private Redis is supervised too: everything else waits on it, so a dead one is restarted
  // (same port, same AOF directory: the jobs and the reward queue come back) and said out loud.
  let redisHeld = false;
  const onRedisExit = (r: LocalRedis, proc: ChildProcess, startedAt: number, code: number | null, signal: NodeJS.Signals | null) => {
    if (stopping || !supervise || redisHeld || r.process !== proc) return;
    const { delay, message: what } = recordDeath("redis", "redis-server", startedAt, code, signal);
    log(`supervisor: ${what}`);
    if (delay === null) return;
    setTimeout(() => {
      if (stopping || redisHeld || r.process !== proc) return;
      const t0 = Date.now();
      r.restart().then(
        () => {
          restartCount.redis = (restartCount.redis ?? 0) + 1;
          watchRedis();
          const back = `redis-server is back (${r.url}, ${((Date.now() - t0) / 1000).toFixed(1)} s after its restart)`;
          log(`supervisor: ${back}`);
          // Written once Redis answers again, so the jobs' events carry the outage.
          void tellJobs("warn", `service ${what}`).then(() => tellJobs("info", `service ${back}`));
        },
        (err: Error) => {
          log(`supervisor: redis-server did not come back: ${err.message}`);
          // The new redis-server may already be gone: count it as another death (backoff, then
          // the crash-loop limit) instead of waiting for an exit that has happened.
          const p = r.process;
          if (p.exitCode !== null || p.signalCode !== null) onRedisExit(r, p, t0, p.exitCode, p.signalCode);
          else watchRedis();
        },
      );
    }, delay).unref();
  };
  const watchRedis = () => {
    if (!redis) return;
    const r = redis;
    const proc = r.process;
    const startedAt = Date.now();
    proc.once("exit", (code, signal) => onRedisExit(r, proc, startedAt, code, signal));
  };
  watchRedis();
  const ownRedis = redis;
  const supervisedRedis: LocalRedis | undefined = ownRedis && {
    url: ownRedis.url,
    port: ownRedis.port,
    dir: ownRedis.dir,
    get process() {
      return ownRedis.process;
    },
    stop: async () => {
      redisHeld = true;
      await ownRedis.stop();
    },
    kill: async () => {
      redisHeld = true;
      await ownRedis.kill();
    },
    restart: async () => {
      await ownRedis.restart();
      redisHeld = false;
      watchRedis();
    },
  };

  const stop = async () => {
    stopping = true;
    await Promise.all([...processes.values()].map((p) => terminate(p.proc)));
    eventRedis?.disconnect();
    await redis?.stop();
  };
  try {
    // The learner first (rollout workers fetch the latest weights from it), the api last.
    const learner = launch(specs[0]!);
    await waitReady(learner);
    const middle = specs.slice(1, -1).map(launch);
    await Promise.all(middle.map(waitReady));
    const api = launch(specs.at(-1)!);
    await waitReady(api);
  } catch (err) {
    await stop();
    throw err;
  }
  for (const p of processes.values())
    log(`${p.name.padEnd(11)} ${p.grpcAddr ?? "(queue worker)"}  metrics :${p.metricsPort}  log ${p.logFile}`);

  return {
    redisUrl,
    apiAddr: specs.at(-1)!.grpcAddr!,
    learnerAddr,
    get processes() {
      return [...processes.values()];
    },
    ...(supervisedRedis ? { redis: supervisedRedis } : {}),
    metricsTargets: () => [...processes.values()].map((p) => `127.0.0.1:${p.metricsPort}`),
    stop,
    restarts: () => ({ ...restartCount }),
    kill: async (name, signal = "SIGKILL") => {
      const p = processes.get(name);
      held.add(name);
      if (p) await terminate(p.proc, signal);
    },
    restart: async (name) => {
      const s = specs.find((x) => x.name === name);
      if (!s) throw new Error(`no mesh process named ${name}`);
      held.delete(name);
      const mp = launch(s);
      await waitReady(mp);
      return mp;
    },
  };
}

function mkdirP(p: string): string {
  mkdirSync(p, { recursive: true });
  return p;
}

function terminate(proc: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 15_000): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    proc.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill(signal);
  });
}
