import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkHealth, freePort, startLocalRedis, type LocalRedis } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const READY_TIMEOUT_MS = 120_000;

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
  redis?: LocalRedis;
  /** Metrics endpoints, for Prometheus. */
  metricsTargets(): string[];
  /** Stops every service (SIGTERM, then SIGKILL after the grace period) and the private Redis. */
  stop(): Promise<void>;
  /** Kills one process with a signal (fault tests) and returns its exit. */
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed process again with the same settings. */
  restart(name: string): Promise<MeshProcess>;
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

  const stop = async () => {
    await Promise.all([...processes.values()].map((p) => terminate(p.proc)));
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
    ...(redis ? { redis } : {}),
    metricsTargets: () => [...processes.values()].map((p) => `127.0.0.1:${p.metricsPort}`),
    stop,
    kill: async (name, signal = "SIGKILL") => {
      const p = processes.get(name);
      if (p) await terminate(p.proc, signal);
    },
    restart: async (name) => {
      const s = specs.find((x) => x.name === name);
      if (!s) throw new Error(`no mesh process named ${name}`);
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
