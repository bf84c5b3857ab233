import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { createLogger, createRedis, startLocalRedis, type HostTensor, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";

import { GrpoTrainer, type LearnerUpdatePath } from "./trainer/grpo-trainer.js";
import { jaxThreadCount } from "./model/worker-shim.js";
import { writeRandomModelDir } from "./testing/random-model-dir.js";
import { DEFAULT_MODEL_DIR as SHIPPED_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { WeightPusher, type PushPhases, type WeightPusherOptions } from "./push/weight-pusher.js";
import type { PushResult } from "./learner-service.js";

/**
 * What --push-transports can name: the learner's two transports as it runs them (tcp: the data
 * connection, kept between pushes, beside a cached worker list; grpc: chunks on the stream), and
 * the data connection with a lever off, to measure each lever in the same rounds: tcp-connect is
 * the push before the levers (a new connection per push, each push waiting for its Redis lookup).
 */
export const PUSH_VARIANTS = {
  tcp: { transport: "tcp" },
  grpc: { transport: "grpc" },
  "tcp-connect": { transport: "tcp", keepConnections: false, cacheWorkers: false },
  "tcp-nokeep": { transport: "tcp", keepConnections: false },
  "tcp-nocache": { transport: "tcp", cacheWorkers: false },
  "tcp-call": { transport: "tcp", directPushes: false },
} as const satisfies Record<string, WeightPusherOptions>;
export type PushTransport = keyof typeof PUSH_VARIANTS;
const PUSH_TRANSPORTS = Object.keys(PUSH_VARIANTS) as PushTransport[];
const DEFAULT_PUSH_TRANSPORTS: PushTransport[] = ["tcp", "grpc"];

/** Benchmark shape: a typical RL step of the demo (prompts × samples, response tokens). */
export const BENCH_PROMPTS = 4;
export const BENCH_SAMPLES_PER_PROMPT = 8;
export const BENCH_PROMPT_TOKENS = 24;
export const BENCH_RESPONSE_TOKENS = 48;
/** Timed TrainSteps per update path (after one untimed compile step each), interleaved. */
export const BENCH_TRAIN_STEPS = 3;
export const BENCH_PROFILE_REPS = 3;
export const BENCH_PUSH_ROUNDS = 10;
const WORKERS = 2;
const MB = 1e6;
const LOOPBACK_CHUNK = 1 << 20;

export const BENCH_LEARNER_USAGE = `usage: rlmesh bench learner [--json] [--steps N] [--pushes N] [--push-workers 1,2,4] [--push-transports tcp,grpc] [--push-mb N] [--model-dir DIR] [--push-only [--push-alternate]] [--profile [--reps N]]
  TrainStep samples/s (jax-js, ${BENCH_PROMPTS}×${BENCH_SAMPLES_PER_PROMPT} samples, ${BENCH_RESPONSE_TOKENS}-token responses, coupled masks) on the
  shipped model (a random-init model of the same config if it is not trained yet): the fast update
  path and the baseline path (RLMESH_LEARNER_UPDATE=baseline, the learner before issue 17) in the
  same run, steps interleaved, medians of --steps (default ${BENCH_TRAIN_STEPS}); and weight-push MB/s to ${WORKERS}
  local gRPC workers vs raw loopback TCP of the same bytes to the same processes, interleaved
  round by round (push/loopback: the median round's; --push-workers: one
  measurement per worker count; --push-transports: the transports measured, interleaved in the
  same rounds, the first is the headline and grpc the baseline (default tcp,grpc: the data
  connection and the chunked stream; also tcp-connect: the data connection as before issue 17's
  fixed-cost work, a new connection per push and a Redis lookup before it, tcp-nokeep and
  tcp-nocache: one lever off); --push-mb: a synthetic payload of N MB instead of the weights;
  --push-only: no TrainSteps, the push alone of the model's float initializers or of --push-mb;
  --push-alternate: instead of rounds with loopback legs, --pushes versions per transport back to
  back, the transports alternating version by version: push ms quartiles and CPU ms per push of
  the pushing process and of the worker processes).
  --profile: instead, the table of where a TrainStep's time goes (compilation, forward, backward,
  the one-hot embedding gradient, the LM head at unread positions, the coupled second pass, copies,
  optimizer, checkpoint), both paths, medians of --reps (default ${BENCH_PROFILE_REPS}).
  Threads: RLMESH_JAX_THREADS (default: all cores).`;

export interface BenchLearnerResult extends PushSummary {
  model: string;
  /** The fast update path (the learner's default). */
  train_samples_per_s: number;
  train_step_seconds: number;
  /** The baseline path (RLMESH_LEARNER_UPDATE=baseline), same run, steps interleaved. */
  baseline_train_samples_per_s: number;
  baseline_train_step_seconds: number;
  /** train_samples_per_s / baseline_train_samples_per_s. */
  train_speedup: number;
  /** Every timed step's seconds, in run order. */
  train_step_seconds_all: { fast: number[]; baseline: number[] };
  /** The untimed first step per path (compiles the batch shape's kernels). */
  first_step_seconds: { fast: number; baseline: number };
  jax_threads: number;
  loadavg_before: number[];
  loadavg_after: number[];
  weight_bytes: number;
}

interface BenchArgs {
  json: boolean;
  steps: number;
  pushes: number;
  /** Rollout-worker counts to push to, one measurement each. */
  pushWorkers: number[];
  /** Transports measured in the same rounds; the first is the headline. */
  pushTransports: PushTransport[];
  /** Push a synthetic payload of this many MB instead of the model's weights. */
  pushMb?: number;
  /** Skip the TrainSteps: only the weight push (of the model's float initializers, or --push-mb). */
  pushOnly?: boolean;
  /** With pushOnly: versions back to back, transports alternating (no loopback legs). */
  pushAlternate?: boolean;
  modelDir?: string;
  profile: boolean;
  reps: number;
}

function parseArgs(argv: readonly string[]): BenchArgs {
  const a: BenchArgs = { json: false, steps: BENCH_TRAIN_STEPS, pushes: BENCH_PUSH_ROUNDS, pushWorkers: [WORKERS], pushTransports: [...DEFAULT_PUSH_TRANSPORTS], profile: false, reps: BENCH_PROFILE_REPS };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const int = () => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`bench learner: ${f} needs a positive integer\n${BENCH_LEARNER_USAGE}`);
      return n;
    };
    if (f === "--json") a.json = true;
    else if (f === "--steps") a.steps = int();
    else if (f === "--pushes") a.pushes = int();
    else if (f === "--profile") a.profile = true;
    else if (f === "--push-only") a.pushOnly = true;
    else if (f === "--push-alternate") a.pushAlternate = true;
    else if (f === "--push-mb") a.pushMb = int();
    else if (f === "--push-workers") {
      const list = (argv[++i] ?? "").split(",").map(Number);
      if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
        throw new Error(`bench learner: --push-workers needs a list of positive integers, e.g. 1,2,4\n${BENCH_LEARNER_USAGE}`);
      a.pushWorkers = list;
    } else if (f === "--push-transports") {
      const list = (argv[++i] ?? "").split(",") as PushTransport[];
      if (list.some((t) => !PUSH_TRANSPORTS.includes(t)) || new Set(list).size !== list.length)
        throw new Error(`bench learner: --push-transports needs distinct names from ${PUSH_TRANSPORTS.join(",")}, e.g. tcp,grpc\n${BENCH_LEARNER_USAGE}`);
      a.pushTransports = list;
    }
    else if (f === "--reps") a.reps = int();
    else if (f === "--model-dir") {
      const v = argv[++i];
      if (!v) throw new Error(`bench learner: --model-dir needs a value\n${BENCH_LEARNER_USAGE}`);
      a.modelDir = v;
    } else throw new Error(`bench learner: unknown flag ${f}\n${BENCH_LEARNER_USAGE}`);
  }
  return a;
}

/** The job id of the bench's TrainSteps and pushes. */
const BENCH_JOB = "bench";

/** Deterministic samples in the model's vocabulary, every group informative. */
export function benchSamples(vocab: number, eos: number, mask: number, version: number, salt: number, jobId = BENCH_JOB): TrainSample[] {
  const id = (x: number) => {
    const v = 4 + (x % (vocab - 4));
    return v === mask || v === eos ? 4 : v;
  };
  const out: TrainSample[] = [];
  for (let g = 0; g < BENCH_PROMPTS; g++) {
    const prompt = Array.from({ length: BENCH_PROMPT_TOKENS }, (_, j) => id(g * 131 + j * 7 + salt));
    for (let k = 0; k < BENCH_SAMPLES_PER_PROMPT; k++) {
      const resp = Array.from({ length: BENCH_RESPONSE_TOKENS - 1 }, (_, j) => id(g * 37 + k * 101 + j * 13 + salt));
      out.push({ promptId: `p${g}`, promptTokenIds: prompt, responseTokenIds: [...resp, eos], reward: (g + k) % 2, policyVersion: version, policyJobId: jobId, suffixTokenIds: [] });
    }
  }
  return out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

interface TrainBench {
  seconds: Record<LearnerUpdatePath, number[]>;
  first: Record<LearnerUpdatePath, number>;
  tensors: HostTensor[];
}

/**
 * Both update paths on the same requests, in one process: one untimed step each (compiles this
 * batch shape's kernels), then `steps` timed steps each, alternating which path goes first.
 */
async function benchTrain(modelDir: string, steps: number, scratch: string, log: (l: string) => void): Promise<TrainBench> {
  const logger = createLogger("bench-learner", { level: "error" });
  const paths: LearnerUpdatePath[] = ["baseline", "fast"];
  const trainers = {} as Record<LearnerUpdatePath, GrpoTrainer>;
  for (const p of paths) trainers[p] = await GrpoTrainer.open({ modelDir, checkpointDir: join(scratch, `ckpt-${p}`), logger, updatePath: p });
  const m = trainers.fast.modelManifest;
  const req = (t: GrpoTrainer, n: number): TrainStepRequest => ({
    jobId: BENCH_JOB,
    step: n,
    samples: benchSamples(m.vocab_size, m.eos_id, m.mask_id, t.status().policyVersion, n),
    params: null,
    seed: 0,
  });
  const timed = async (p: LearnerUpdatePath, n: number) => {
    const t0 = performance.now();
    await trainers[p].trainStep(req(trainers[p], n));
    return (performance.now() - t0) / 1000;
  };
  const out: TrainBench = { seconds: { baseline: [], fast: [] }, first: { baseline: 0, fast: 0 }, tensors: [] };
  for (const p of paths) out.first[p] = await timed(p, 0);
  for (let n = 1; n <= steps; n++) {
    for (const p of n % 2 ? paths : [...paths].reverse()) out.seconds[p].push(await timed(p, n));
    log(`  step ${n}/${steps}: baseline ${out.seconds.baseline.at(-1)!.toFixed(2)} s, fast ${out.seconds.fast.at(-1)!.toFixed(2)} s (load average ${loadavg()[0]!.toFixed(2)})`);
  }
  out.tensors = trainers.fast.weights().tensors;
  for (const p of paths) trainers[p].dispose();
  return out;
}

interface SinkProcess {
  proc: ChildProcess;
  tcpPort: number;
}

/** CPU seconds (user + system) a process has used, from /proc (null where there is none). */
function procCpuSeconds(pid: number | undefined): number | null {
  try {
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}
/** USER_HZ: 100 on every Linux of note (sysconf is out of reach from Node). */
const CLOCK_TICKS_PER_S = 100;

/** CPU seconds of the sink processes so far (null without /proc). */
function sinksCpuSeconds(sinks: readonly SinkProcess[]): number | null {
  let total = 0;
  for (const s of sinks) {
    const c = procCpuSeconds(s.proc.pid);
    if (c === null) return null;
    total += c;
  }
  return total;
}

/** CPU seconds of this process and the sinks so far (null without /proc). */
function benchCpuSeconds(sinks: readonly SinkProcess[]): number | null {
  const own = process.cpuUsage();
  const total = sinksCpuSeconds(sinks);
  return total === null ? null : total + (own.user + own.system) / 1e6;
}

async function startSinkProcess(redisUrl: string, id: string): Promise<SinkProcess> {
  const main = join(dirname(fileURLToPath(import.meta.url)), "testing", "weight-sink-main.js");
  const proc = spawn(process.execPath, [main, redisUrl, id], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once("line", (l) => {
      rl.close();
      resolve(l);
    });
    proc.once("exit", (code) => reject(new Error(`weight sink ${id} exited with ${code}`)));
  });
  const { tcpPort } = JSON.parse(line) as { grpcPort: number; tcpPort: number };
  return { proc, tcpPort };
}

/** Sends `bytes` to a TCP sink and resolves when it has acknowledged everything. */
function pump(port: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(LOOPBACK_CHUNK, 7);
    const sock = connect(port, "127.0.0.1");
    let left = bytes;
    sock.on("error", reject);
    sock.on("data", () => undefined);
    sock.on("end", () => resolve());
    const write = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once("drain", write);
      }
      sock.end();
    };
    sock.once("connect", write);
  });
}

export interface PushMeasurement {
  workers: number;
  /** tcp: the data connection negotiated by UpdateWeights; grpc: chunks on the UpdateWeights stream. */
  transport: PushTransport;
  /** Median seconds to push one version to all the workers. */
  push_seconds: number;
  push_mb_per_s: number;
  loopback_mb_per_s: number;
  /** Median over the rounds of (push MB/s ÷ loopback MB/s of the same round). */
  push_ratio: number;
  /** Each round's push/loopback ratio. */
  push_ratios: number[];
  /**
   * CPU milliseconds per MB moved (the pushing process and every worker process together, all
   * rounds), push and raw loopback; null without /proc. Less sensitive to the machine's load than
   * seconds: on a busy machine the ratio follows the CPU each byte costs.
   */
  push_cpu_ms_per_mb: number | null;
  loopback_cpu_ms_per_mb: number | null;
  /**
   * Where a push's time went (WeightPusher.lastPhases): milliseconds from the push's start until
   * the Redis worker list came, and (the latest over the workers) until the UpdateWeights calls
   * were started, the workers connected back and presented their tokens (tcp, a new data
   * connection; null when none did), the payload was written, the replies came; and the whole
   * push. Medians over the rounds.
   */
  push_phases_ms: { listed: number; call: number; greeted: number | null; written: number | null; reply: number; total: number };
}

/** One push's phases, the latest worker's for each (the push waits for all of them). */
function pushPhaseRow(p: PushPhases): { listed: number; call: number; greeted: number | null; written: number | null; reply: number; total: number } {
  const latest = (f: (w: PushPhases["workers"][number]) => number | undefined) => {
    const xs = p.workers.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? Math.max(...xs) : null;
  };
  return { listed: p.listedMs, call: latest((w) => w.callMs) ?? 0, greeted: latest((w) => w.greetedMs), written: latest((w) => w.writtenMs), reply: latest((w) => w.replyMs) ?? 0, total: p.totalMs };
}

/** `mb` MB of float32 weights in 16 MB tensors (a synthetic push payload). */
function syntheticTensors(mb: number): HostTensor[] {
  const floats = Math.round((mb * MB) / 4);
  const per = (16 * MB) / 4;
  const out: HostTensor[] = [];
  for (let i = 0, left = floats; left > 0; i++, left -= per) {
    const n = Math.min(per, left);
    const data = new Float32Array(n);
    for (let j = 0; j < n; j += 1024) data[j] = (i + j) % 7;
    out.push({ name: `bench.w${String(i).padStart(4, "0")}`, dtype: "DTYPE_FLOAT32", shape: [n], data });
  }
  return out;
}

interface PushMesh {
  sinks: SinkProcess[];
  /** One pusher per transport, in the order given. */
  pushers: { transport: PushTransport; pusher: WeightPusher }[];
  /** Pushes the next version of the tensors with `pusher`; throws unless it reached every sink. */
  pushVersion: (pusher: WeightPusher, name: PushTransport) => Promise<PushResult>;
}

/**
 * Runs `body` against `workers` sink processes registered in a local Redis and one WeightPusher
 * per transport (PUSH_VARIANTS), then closes the pushers and stops the sinks and the Redis.
 */
async function withPushMesh<T>(tensors: HostTensor[], workers: number, transports: readonly PushTransport[], body: (mesh: PushMesh) => Promise<T>): Promise<T> {
  const logger = createLogger("bench-learner", { level: "error" });
  const redisServer = await startLocalRedis();
  const redis = createRedis(redisServer.url, { role: "client", logger });
  const sinks: SinkProcess[] = [];
  const pushers = transports.map((transport) => ({ transport, pusher: new WeightPusher(redis, logger, undefined, { ...PUSH_VARIANTS[transport] }) }));
  try {
    for (let w = 0; w < workers; w++) sinks.push(await startSinkProcess(redisServer.url, `bench-${w}`));
    let v = 0;
    const pushVersion = async (pusher: WeightPusher, name: PushTransport) => {
      const r = await pusher.push({ jobId: BENCH_JOB, version: ++v }, tensors);
      if (r.pushedTo.length !== workers) throw new Error(`bench learner: ${name} push of version ${v} reached ${r.pushedTo.length} of ${workers} workers`);
      return r;
    };
    return await body({ sinks, pushers, pushVersion });
  } finally {
    for (const { pusher } of pushers) pusher.close();
    for (const s of sinks) {
      const exited = new Promise((r) => s.proc.once("exit", r));
      s.proc.kill("SIGTERM");
      await exited;
    }
    redis.disconnect();
    await redisServer.stop();
  }
}

/**
 * Pushes to `workers` sink processes with each transport, and the same bytes over raw loopback
 * TCP, interleaved round by round; one measurement per transport.
 */
function benchPush(tensors: HostTensor[], rounds: number, workers: number, transports: readonly PushTransport[]): Promise<PushMeasurement[]> {
  return withPushMesh(tensors, workers, transports, async ({ sinks, pushers, pushVersion }) => {
    // A first version per transport opens its channels; it is not timed.
    let bytes = 0;
    for (const { pusher, transport } of pushers) bytes = (await pushVersion(pusher, transport)).bytes;
    // Each round: one version per transport and the same bytes, split the same way, over raw
    // sockets to the same processes, in an order that rotates every round, so that all see the
    // same machine load (on a shared machine the load moves within seconds); a ratio is the median
    // of the rounds'.
    const push = new Map<PushTransport, { seconds: number[]; ratios: number[]; cpu: number | null; phases: ReturnType<typeof pushPhaseRow>[] }>(
      transports.map((t) => [t, { seconds: [], ratios: [], cpu: 0, phases: [] }]),
    );
    const loop: number[] = [];
    let loopCpu: number | null = 0;
    const add = (acc: number | null, c0: number | null, c1: number | null) => (c0 === null || c1 === null || acc === null ? null : acc + c1 - c0);
    const legs: (PushTransport | "loopback")[] = ["loopback", ...transports];
    for (let round = 0; round < rounds; round++) {
      const seconds = new Map<string, number>();
      for (let k = 0; k < legs.length; k++) {
        const leg = legs[(k + round) % legs.length]!;
        const c0 = benchCpuSeconds(sinks);
        if (leg === "loopback") {
          const t0 = performance.now();
          await Promise.all(sinks.map((s) => pump(s.tcpPort, bytes / workers)));
          seconds.set(leg, (performance.now() - t0) / 1000);
          loopCpu = add(loopCpu, c0, benchCpuSeconds(sinks));
        } else {
          const pusher = pushers.find((p) => p.transport === leg)!.pusher;
          const r = await pushVersion(pusher, leg);
          seconds.set(leg, r.seconds);
          const m = push.get(leg)!;
          m.cpu = add(m.cpu, c0, benchCpuSeconds(sinks));
          m.phases.push(pushPhaseRow(pusher.lastPhases!));
        }
      }
      loop.push(seconds.get("loopback")!);
      for (const t of transports) {
        const m = push.get(t)!;
        m.seconds.push(seconds.get(t)!);
        m.ratios.push(loop.at(-1)! / m.seconds.at(-1)!);
      }
    }
    const perMb = (cpu: number | null) => (cpu === null ? null : (cpu * 1000) / ((bytes * rounds) / MB));
    return transports.map((transport) => {
      const m = push.get(transport)!;
      const pushSeconds = median(m.seconds);
      const med = (f: (r: ReturnType<typeof pushPhaseRow>) => number | null) => {
        const xs = m.phases.map(f).filter((x): x is number => x !== null);
        return xs.length ? median(xs) : null;
      };
      return {
        workers,
        transport,
        push_seconds: pushSeconds,
        push_mb_per_s: bytes / MB / pushSeconds,
        loopback_mb_per_s: bytes / MB / median(loop),
        push_ratio: median(m.ratios),
        push_ratios: m.ratios,
        push_cpu_ms_per_mb: perMb(m.cpu),
        loopback_cpu_ms_per_mb: perMb(loopCpu),
        push_phases_ms: {
          listed: med((r) => r.listed)!,
          call: med((r) => r.call)!,
          greeted: med((r) => r.greeted),
          written: med((r) => r.written),
          reply: med((r) => r.reply)!,
          total: med((r) => r.total)!,
        },
      };
    });
  });
}

/** The push fields of both bench results. */
export interface PushSummary {
  push_mb_per_s: number;
  loopback_mb_per_s: number;
  push_ratio: number;
  /** The headline transport's measurements, one per --push-workers count (the push_* fields above: 2 workers, else the first). */
  push_by_workers: PushMeasurement[];
  /** The headline transport (the first of --push-transports). */
  push_transport: PushTransport;
  /** push_ratio of the grpc transport (chunks on the stream), same rounds and worker count; null if not measured. */
  baseline_push_ratio: number | null;
  /** The grpc transport's measurements, one per worker count (empty if not measured). */
  baseline_push_by_workers: PushMeasurement[];
  push_payload_bytes: number;
  /** Every transport's measurements (all of --push-transports), one per worker count. */
  push_measurements: PushMeasurement[];
}

const fmtMs = (x: number | null) => (x === null ? "-" : x.toFixed(2));

/** One push measurement per --push-workers count and transport, logged as it is taken. */
async function benchPushes(args: BenchArgs, weights: HostTensor[], log: (line: string) => void): Promise<PushSummary> {
  const payload = args.pushMb ? syntheticTensors(args.pushMb) : weights;
  const payloadBytes = payload.reduce((a, t) => a + t.data.byteLength, 0);
  const all: PushMeasurement[] = [];
  for (const workers of args.pushWorkers) {
    const ms = await benchPush(payload, args.pushes, workers, args.pushTransports);
    all.push(...ms);
    for (const p of ms)
      log(
        `  weight push (${p.transport}) to ${workers} worker(s): ${p.push_seconds.toFixed(3)} s per version, ${p.push_mb_per_s.toFixed(1)} MB/s ` +
          `(${(payloadBytes / MB).toFixed(2)} MB per version${args.pushMb ? ", synthetic" : ""}, medians of ${args.pushes} versions); ` +
          `raw loopback TCP ${p.loopback_mb_per_s.toFixed(1)} MB/s; push/loopback = ${p.push_ratio.toFixed(3)} ` +
          `(median of rounds: ${p.push_ratios.map((r) => r.toFixed(2)).join(" ")})` +
          (p.push_cpu_ms_per_mb === null || p.loopback_cpu_ms_per_mb === null
            ? ""
            : `; CPU ms per MB (all processes): push ${p.push_cpu_ms_per_mb.toFixed(2)}, loopback ${p.loopback_cpu_ms_per_mb.toFixed(2)}`) +
          `\n    phases (ms from the push's start, medians; latest worker): workers listed ${fmtMs(p.push_phases_ms.listed)}, calls started ${fmtMs(p.push_phases_ms.call)}, ` +
          `connected back ${fmtMs(p.push_phases_ms.greeted)}, written ${fmtMs(p.push_phases_ms.written)}, replies ${fmtMs(p.push_phases_ms.reply)}, push ${fmtMs(p.push_phases_ms.total)}`,
      );
  }
  const headline = args.pushTransports[0]!;
  const of = (t: PushTransport) => all.filter((p) => p.transport === t);
  const pick = (ms: PushMeasurement[]) => ms.find((p) => p.workers === WORKERS) ?? ms[0];
  const push = pick(of(headline))!;
  const baseline = headline === "grpc" ? [] : of("grpc");
  return {
    push_mb_per_s: push.push_mb_per_s,
    loopback_mb_per_s: push.loopback_mb_per_s,
    push_ratio: push.push_ratio,
    push_by_workers: of(headline),
    push_transport: headline,
    baseline_push_ratio: pick(baseline)?.push_ratio ?? null,
    baseline_push_by_workers: baseline,
    push_payload_bytes: payloadBytes,
    push_measurements: all,
  };
}

export interface BenchPushOnlyResult extends Partial<PushSummary> {
  model: string;
  /** --push-alternate: one row per worker count and transport. */
  push_alternate?: AlternateMeasurement[];
}

export interface AlternateMeasurement {
  workers: number;
  transport: PushTransport;
  pushes: number;
  push_ms_p25: number;
  push_ms_median: number;
  push_ms_p75: number;
  /** CPU of the pushing process per version (null without /proc for the workers' column). */
  pusher_cpu_ms_per_push: number;
  /** CPU of all the worker processes together per version. */
  workers_cpu_ms_per_push: number | null;
}

/**
 * `--push-alternate`: `pushes` versions per transport to `workers` sink processes, back to back,
 * the transports alternating version by version (so that all see the same load), after two
 * untimed versions each; wall time quartiles and CPU per version of each side.
 */
function benchPushAlternate(tensors: HostTensor[], pushes: number, workers: number, transports: readonly PushTransport[]): Promise<AlternateMeasurement[]> {
  return withPushMesh(tensors, workers, transports, async ({ sinks, pushers, pushVersion }) => {
    const one = async (transport: PushTransport, pusher: WeightPusher) => (await pushVersion(pusher, transport)).seconds * 1000;
    for (let i = 0; i < 2; i++) for (const { transport, pusher } of pushers) await one(transport, pusher);
    const acc: { ms: number[]; own: number; sinks: number | null }[] = pushers.map(() => ({ ms: [], own: 0, sinks: 0 }));
    for (let i = 0; i < pushes; i++) {
      for (let k = 0; k < pushers.length; k++) {
        const j = (k + i) % pushers.length;
        const { transport, pusher } = pushers[j]!;
        const c0 = process.cpuUsage();
        const s0 = sinksCpuSeconds(sinks);
        acc[j]!.ms.push(await one(transport, pusher));
        const c1 = process.cpuUsage(c0);
        const s1 = sinksCpuSeconds(sinks);
        acc[j]!.own += (c1.user + c1.system) / 1000;
        acc[j]!.sinks = s0 === null || s1 === null || acc[j]!.sinks === null ? null : acc[j]!.sinks + (s1 - s0) * 1000;
      }
    }
    return pushers.map(({ transport }, j) => {
      const a = acc[j]!;
      const sorted = [...a.ms].sort((x, y) => x - y);
      const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))]!;
      return {
        workers,
        transport,
        pushes,
        push_ms_p25: q(0.25),
        push_ms_median: median(a.ms),
        push_ms_p75: q(0.75),
        pusher_cpu_ms_per_push: a.own / pushes,
        workers_cpu_ms_per_push: a.sinks === null ? null : a.sinks / pushes,
      };
    });
  });
}

/** `bench learner --push-only`: the weight push alone, of the model's float initializers (or --push-mb). */
export async function benchPushOnly(args: BenchArgs, log: (line: string) => void): Promise<BenchPushOnlyResult> {
  let model = `synthetic ${args.pushMb} MB`;
  let weights: HostTensor[] = [];
  if (!args.pushMb) {
    const m = await benchModel(args);
    model = m.model;
    weights = [...readWeights(parseModel(await readFile(join(m.modelDir, "model.onnx"))))].map(([name, w]) => ({
      name,
      dtype: "DTYPE_FLOAT32" as const,
      shape: [...w.shape],
      data: w.data,
    }));
  }
  log(`bench learner --push-only: ${model}; load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  if (args.pushAlternate) {
    const payload = args.pushMb ? syntheticTensors(args.pushMb) : weights;
    const rows: AlternateMeasurement[] = [];
    for (const workers of args.pushWorkers) {
      const ms = await benchPushAlternate(payload, args.pushes, workers, args.pushTransports);
      rows.push(...ms);
      for (const m of ms)
        log(
          `  ${m.transport} to ${workers} worker(s), ${m.pushes} versions alternating: push ms p25/median/p75 ${m.push_ms_p25.toFixed(2)}/${m.push_ms_median.toFixed(2)}/${m.push_ms_p75.toFixed(2)}; ` +
            `CPU ms per version: pusher ${m.pusher_cpu_ms_per_push.toFixed(2)}, workers ${m.workers_cpu_ms_per_push?.toFixed(2) ?? "-"}`,
        );
    }
    log(`  load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    return { model, push_alternate: rows };
  }
  return { model, ...(await benchPushes(args, weights, log)) };
}

/** The model the bench runs: --model-dir, the shipped model, or a random-init one of its config. */
export async function benchModel(args: { modelDir?: string }, scratch?: string): Promise<{ modelDir: string; model: string }> {
  if (args.modelDir) return { modelDir: args.modelDir, model: args.modelDir };
  if (existsSync(join(SHIPPED_MODEL_DIR, "model.onnx"))) return { modelDir: SHIPPED_MODEL_DIR, model: "shipped models/tiny-coder" };
  const dir = scratch ?? (await mkdtemp(join(tmpdir(), "rlmesh-bench-learner-")));
  return {
    modelDir: await writeRandomModelDir(join(dir, "model"), "tiny", 1),
    model: "random-init tiny config (models/tiny-coder/model.onnx not trained yet)",
  };
}

export async function benchLearner(args: BenchArgs, log: (line: string) => void): Promise<BenchLearnerResult> {
  const scratch = await mkdtemp(join(tmpdir(), "rlmesh-bench-learner-"));
  try {
    const { modelDir, model } = await benchModel(args, scratch);
    log(`bench learner: model ${model}; jax-js threads ${jaxThreadCount()}; load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    const loadavgBefore = loadavg();
    const train = await benchTrain(modelDir, args.steps, scratch, log);
    const loadavgAfter = loadavg();
    const samples = BENCH_PROMPTS * BENCH_SAMPLES_PER_PROMPT;
    const stepFast = median(train.seconds.fast);
    const stepBase = median(train.seconds.baseline);
    const speedup = stepBase / stepFast;
    log(`  TrainStep fast:     ${(samples / stepFast).toFixed(2)} samples/s (median ${stepFast.toFixed(2)} s per step of ${samples} samples; first step ${train.first.fast.toFixed(2)} s)`);
    log(`  TrainStep baseline: ${(samples / stepBase).toFixed(2)} samples/s (median ${stepBase.toFixed(2)} s; first step ${train.first.baseline.toFixed(2)} s)`);
    log(`  speed-up ${speedup.toFixed(2)}× (medians of ${args.steps} interleaved steps; load average ${loadavgAfter.map((x) => x.toFixed(2)).join(" ")})`);
    const weightBytes = train.tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const pushes = await benchPushes(args, train.tensors, log);
    return {
      model,
      train_samples_per_s: samples / stepFast,
      train_step_seconds: stepFast,
      baseline_train_samples_per_s: samples / stepBase,
      baseline_train_step_seconds: stepBase,
      train_speedup: speedup,
      train_step_seconds_all: train.seconds,
      first_step_seconds: train.first,
      jax_threads: jaxThreadCount(),
      loadavg_before: loadavgBefore,
      loadavg_after: loadavgAfter,
      ...pushes,
      weight_bytes: weightBytes,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Entry point of `rlmesh bench learner [--json]`; returns the exit code. */
export async function benchLearnerCommand(argv: string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  if (args.profile) {
    const { profileLearner, formatProfile } = await import("./profile-learner.js");
    const { modelDir, model } = await benchModel(args);
    const p = await profileLearner(modelDir, model, args.reps, args.json ? () => undefined : (l) => console.log(l));
    if (args.json) console.log(JSON.stringify(p));
    else for (const l of formatProfile(p)) console.log(l);
    return 0;
  }
  if (args.pushOnly) {
    const r = await benchPushOnly(args, args.json ? () => undefined : (l) => console.log(l));
    if (args.json) console.log(JSON.stringify(r));
    return 0;
  }
  const result = await benchLearner(args, args.json ? () => undefined : (l) => console.log(l));
  if (args.json) console.log(JSON.stringify(result));
  return 0;
}
