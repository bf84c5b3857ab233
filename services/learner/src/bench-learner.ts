import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { createLogger, createRedis, startLocalRedis, type HostTensor, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";

import { GrpoTrainer } from "./trainer/grpo-trainer.js";
import { writeRandomModelDir } from "./testing/random-model-dir.js";
import { DEFAULT_MODEL_DIR as SHIPPED_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { WeightPusher } from "./push/weight-pusher.js";

/** Benchmark shape: a typical RL step of the demo (prompts × samples, response tokens). */
export const BENCH_PROMPTS = 4;
export const BENCH_SAMPLES_PER_PROMPT = 8;
export const BENCH_PROMPT_TOKENS = 24;
export const BENCH_RESPONSE_TOKENS = 48;
export const BENCH_TRAIN_STEPS = 2;
export const BENCH_PUSH_ROUNDS = 10;
const WORKERS = 2;
const MB = 1e6;
const LOOPBACK_CHUNK = 1 << 20;

export const BENCH_LEARNER_USAGE = `usage: rlmesh bench learner [--json] [--steps N] [--pushes N] [--model-dir DIR]
  TrainStep samples/s (jax-js, ${BENCH_PROMPTS}×${BENCH_SAMPLES_PER_PROMPT} samples, ${BENCH_RESPONSE_TOKENS}-token responses) on the
  shipped model (a random-init model of the same config if it is not trained yet), and
  weight-push MB/s to ${WORKERS} local gRPC workers vs raw loopback TCP measured in the same run.`;

export interface BenchLearnerResult {
  model: string;
  train_samples_per_s: number;
  train_step_seconds: number;
  push_mb_per_s: number;
  loopback_mb_per_s: number;
  push_ratio: number;
  weight_bytes: number;
}

interface BenchArgs {
  json: boolean;
  steps: number;
  pushes: number;
  modelDir?: string;
}

function parseArgs(argv: readonly string[]): BenchArgs {
  const a: BenchArgs = { json: false, steps: BENCH_TRAIN_STEPS, pushes: BENCH_PUSH_ROUNDS };
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
      out.push({ promptId: `p${g}`, promptTokenIds: prompt, responseTokenIds: [...resp, eos], reward: (g + k) % 2, policyVersion: version, policyJobId: jobId });
    }
  }
  return out;
}

async function benchTrain(modelDir: string, steps: number, scratch: string): Promise<{ samplesPerS: number; stepSeconds: number; tensors: HostTensor[] }> {
  const logger = createLogger("bench-learner", { level: "error" });
  const trainer = await GrpoTrainer.open({ modelDir, checkpointDir: join(scratch, "ckpt"), logger });
  const m = trainer.modelManifest;
  const req = (n: number): TrainStepRequest => ({
    jobId: BENCH_JOB,
    step: n,
    samples: benchSamples(m.vocab_size, m.eos_id, m.mask_id, trainer.status().policyVersion, n),
    params: null,
    seed: 0,
  });
  // Step 0 compiles the kernels for this batch shape; it is not timed.
  await trainer.trainStep(req(0));
  const t0 = performance.now();
  for (let n = 1; n <= steps; n++) await trainer.trainStep(req(n));
  const seconds = (performance.now() - t0) / 1000;
  const tensors = trainer.weights().tensors;
  trainer.dispose();
  return { samplesPerS: (steps * BENCH_PROMPTS * BENCH_SAMPLES_PER_PROMPT) / seconds, stepSeconds: seconds / steps, tensors };
}

interface SinkProcess {
  proc: ChildProcess;
  tcpPort: number;
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

async function benchPush(tensors: HostTensor[], rounds: number): Promise<{ pushMbps: number; loopMbps: number }> {
  const logger = createLogger("bench-learner", { level: "error" });
  const redisServer = await startLocalRedis();
  const redis = createRedis(redisServer.url, { role: "client", logger });
  const sinks: SinkProcess[] = [];
  try {
    for (let w = 0; w < WORKERS; w++) sinks.push(await startSinkProcess(redisServer.url, `bench-${w}`));
    const pusher = new WeightPusher(redis, logger);
    // Version 1 opens the channels; it is not timed.
    await pusher.push({ jobId: BENCH_JOB, version: 1 }, tensors);
    let bytes = 0;
    let seconds = 0;
    for (let v = 2; v < 2 + rounds; v++) {
      const r = await pusher.push({ jobId: BENCH_JOB, version: v }, tensors);
      if (r.pushedTo.length !== WORKERS) throw new Error(`bench learner: push of version ${v} reached ${r.pushedTo.length} of ${WORKERS} workers`);
      bytes += r.bytes;
      seconds += r.seconds;
    }
    pusher.close();
    // The same number of bytes, split the same way, over raw sockets to the same processes.
    const t0 = performance.now();
    await Promise.all(sinks.map((s) => pump(s.tcpPort, bytes / WORKERS)));
    const loopSeconds = (performance.now() - t0) / 1000;
    return { pushMbps: bytes / MB / seconds, loopMbps: bytes / MB / loopSeconds };
  } finally {
    for (const s of sinks) {
      const exited = new Promise((r) => s.proc.once("exit", r));
      s.proc.kill("SIGTERM");
      await exited;
    }
    redis.disconnect();
    await redisServer.stop();
  }
}

export async function benchLearner(args: BenchArgs, log: (line: string) => void): Promise<BenchLearnerResult> {
  const scratch = await mkdtemp(join(tmpdir(), "rlmesh-bench-learner-"));
  try {
    let modelDir = args.modelDir;
    let model: string;
    if (modelDir) model = modelDir;
    else if (existsSync(join(SHIPPED_MODEL_DIR, "model.onnx"))) {
      modelDir = SHIPPED_MODEL_DIR;
      model = "shipped models/tiny-coder";
    } else {
      modelDir = await writeRandomModelDir(join(scratch, "model"), "tiny", 1);
      model = "random-init tiny config (models/tiny-coder/model.onnx not trained yet)";
    }
    log(`bench learner: model ${model}`);
    const train = await benchTrain(modelDir, args.steps, scratch);
    log(`  TrainStep: ${train.samplesPerS.toFixed(2)} samples/s (${train.stepSeconds.toFixed(2)} s per step of ${BENCH_PROMPTS * BENCH_SAMPLES_PER_PROMPT} samples)`);
    const weightBytes = train.tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const push = await benchPush(train.tensors, args.pushes);
    const ratio = push.pushMbps / push.loopMbps;
    log(`  weight push: ${push.pushMbps.toFixed(1)} MB/s to ${WORKERS} workers (${(weightBytes / MB).toFixed(2)} MB per version, ${args.pushes} versions)`);
    log(`  raw loopback TCP: ${push.loopMbps.toFixed(1)} MB/s; push/loopback = ${ratio.toFixed(3)}`);
    return {
      model,
      train_samples_per_s: train.samplesPerS,
      train_step_seconds: train.stepSeconds,
      push_mb_per_s: push.pushMbps,
      loopback_mb_per_s: push.loopMbps,
      push_ratio: ratio,
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
  const result = await benchLearner(args, args.json ? () => undefined : (l) => console.log(l));
  if (args.json) console.log(JSON.stringify(result));
  return 0;
}
