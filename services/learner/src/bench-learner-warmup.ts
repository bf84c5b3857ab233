// `rlmesh bench learner --first-steps N [--warmup on,off]`: the first N TrainSteps of a fresh job
// on the demo's batch (4 prompts × G 8, coupled masks), with the learner's warm-up of the job's
// batch shapes (trainer/warmup.ts) and without, each mode in a process of its own (jax-js keeps
// compiled kernels per process), on the same requests; prints every step's seconds and bucket,
// the totals, and the warm-up's own cost.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createLogger, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import type { ModelManifest } from "@rlmesh/shared/model/index";

import { benchModel } from "./bench-learner.js";
import { GrpoTrainer } from "./trainer/grpo-trainer.js";
import { bucketSeqLen } from "./trainer/batch-bucket.js";
import { DEFAULT_WARMUP_RECIPE, warmupShapes, type WarmupReport } from "./trainer/warmup.js";
import { createRng } from "./grpo/seeded-rng.js";
import { jaxThreadCount } from "./model/worker-shim.js";

export const FIRST_STEPS_PROMPTS = 4;
export const FIRST_STEPS_G = 8;
/** Response lengths of the synthetic rollouts: uniform in [MIN, MAX] tokens (MAX: the api's default max_new_tokens). */
export const FIRST_STEPS_RESPONSE_MIN = 16;
export const FIRST_STEPS_RESPONSE_MAX = 64;
const WARMUP_MODES = ["on", "off"] as const;
type WarmupMode = (typeof WARMUP_MODES)[number];

export const BENCH_FIRST_STEPS_USAGE = `usage: rlmesh bench learner --first-steps N [--warmup on,off] [--json] [--model-dir DIR]
  The first N TrainSteps of a fresh job, ${FIRST_STEPS_PROMPTS} prompts × G ${FIRST_STEPS_G} (prompts: the toy task suite's, 4 drawn per
  step; responses ${FIRST_STEPS_RESPONSE_MIN}-${FIRST_STEPS_RESPONSE_MAX} tokens, uniform), the fast update path; with the learner's
  warm-up (RLMESH_LEARNER_WARMUP_* defaults: every batch shape of the demo's recipe compiled
  before the first step) and without it, each mode in a fresh process, in the order given,
  on the same requests. Prints each step's seconds and padded length, the totals and the
  warm-up's own seconds.`;

interface FirstStepsArgs {
  steps: number;
  modes: WarmupMode[];
  json: boolean;
  modelDir?: string;
}

export function parseFirstStepsArgs(argv: readonly string[]): FirstStepsArgs {
  const a: FirstStepsArgs = { steps: 0, modes: [...WARMUP_MODES], json: false };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    if (f === "--json") a.json = true;
    else if (f === "--first-steps") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`bench learner: --first-steps needs a positive integer\n${BENCH_FIRST_STEPS_USAGE}`);
      a.steps = n;
    } else if (f === "--warmup") {
      const list = (argv[++i] ?? "").split(",") as WarmupMode[];
      if (list.length === 0 || list.some((m) => !WARMUP_MODES.includes(m)) || new Set(list).size !== list.length)
        throw new Error(`bench learner: --warmup needs distinct modes from on,off (e.g. on,off)\n${BENCH_FIRST_STEPS_USAGE}`);
      a.modes = list;
    } else if (f === "--model-dir") {
      const v = argv[++i];
      if (!v) throw new Error(`bench learner: --model-dir needs a value\n${BENCH_FIRST_STEPS_USAGE}`);
      a.modelDir = v;
    } else throw new Error(`bench learner: ${f} is not an option of --first-steps\n${BENCH_FIRST_STEPS_USAGE}`);
  }
  if (a.steps === 0) throw new Error(`bench learner: --warmup needs --first-steps N\n${BENCH_FIRST_STEPS_USAGE}`);
  return a;
}

/** One mode's run (a child process's answer). */
export interface FirstStepsRun {
  mode: WarmupMode;
  /** Wall seconds of the warm-up (0 when off). */
  warmup_seconds: number;
  /** The warm-up's shapes, "rowsxseqLen:outcome:seconds". */
  warmup_shapes: string[];
  /** Each TrainStep's wall seconds (what the api's TrainStep waits, push aside). */
  step_seconds: number[];
  /** Each step's padded sequence length. */
  seq_lens: number[];
  /**
   * CPU seconds of the process (all its threads: jax-js's kernel workers too) for the warm-up and
   * for each step: on a machine shared with other work, less sensitive to the load than wall seconds.
   */
  warmup_cpu_seconds: number;
  step_cpu_seconds: number[];
}

export interface FirstStepsResult {
  model: string;
  jax_threads: number;
  steps: number;
  runs: FirstStepsRun[];
  /** Sum of the first N steps' seconds per mode. */
  first_steps_total: Partial<Record<WarmupMode, number>>;
  /** Sum of the first N steps' CPU seconds per mode. */
  first_steps_cpu_total: Partial<Record<WarmupMode, number>>;
  loadavg_before: number[];
  loadavg_after: number[];
}

/** The toy task suite's prompts, tokenized by the model's tokenizer. */
async function toyPrompts(modelDir: string): Promise<number[][]> {
  const tok = await loadTokenizer(join(modelDir, "tokenizer.json"));
  const rows = readFileSync(join(REPO_ROOT, "datasets", "toy", "train.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => (JSON.parse(l) as { prompt: string }).prompt);
  return rows.map((p) => tok.encode(p));
}

/** Step `step`'s request: deterministic (the same in every mode), every group informative. */
function firstStepsRequest(prompts: number[][], m: ModelManifest, step: number, version: number): TrainStepRequest {
  const rng = createRng(0x51a7 + step);
  const ordinary = (x: number) => {
    const v = 3 + (x % (m.vocab_size - 3));
    return v === m.mask_id || v === m.pad_id || v === m.eos_id ? 3 : v;
  };
  const samples: TrainSample[] = [];
  for (let p = 0; p < FIRST_STEPS_PROMPTS; p++) {
    const prompt = prompts[rng.nextInt(prompts.length)]!;
    for (let g = 0; g < FIRST_STEPS_G; g++) {
      const len = FIRST_STEPS_RESPONSE_MIN + rng.nextInt(FIRST_STEPS_RESPONSE_MAX - FIRST_STEPS_RESPONSE_MIN + 1);
      const response = [...Array.from({ length: len - 1 }, () => ordinary(rng.nextInt(1 << 20))), m.eos_id];
      samples.push({ promptId: `p${p}`, promptTokenIds: prompt, responseTokenIds: response, reward: (p + g) % 2, policyVersion: version, policyJobId: "bench", suffixTokenIds: [] });
    }
  }
  return { jobId: "bench", step, samples, params: null, seed: 0 };
}

/** One mode in this process: open a fresh trainer, warm up (mode on), run `steps` TrainSteps. */
export async function runFirstSteps(mode: WarmupMode, steps: number, modelDir: string, scratch: string): Promise<FirstStepsRun> {
  const logger = createLogger("bench-learner", { level: "error" });
  const trainer = await GrpoTrainer.open({ modelDir, checkpointDir: join(scratch, `ckpt-${mode}`), logger, updatePath: "fast" });
  const m = trainer.modelManifest;
  const prompts = await toyPrompts(modelDir);
  let report: WarmupReport | null = null;
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const c0 = cpu();
  const t0 = performance.now();
  if (mode === "on") {
    const recipe = DEFAULT_WARMUP_RECIPE;
    report = await trainer.warmup(warmupShapes(recipe, m.max_seq_len), recipe);
  }
  const warmupSeconds = report ? (performance.now() - t0) / 1000 : 0;
  const warmupCpu = report ? cpu() - c0 : 0;
  const run: FirstStepsRun = {
    mode,
    warmup_seconds: warmupSeconds,
    warmup_shapes: (report?.shapes ?? []).map((s) => `${s.rows}x${s.seqLen}:${s.outcome}:${s.seconds.toFixed(2)}`),
    step_seconds: [],
    seq_lens: [],
    warmup_cpu_seconds: warmupCpu,
    step_cpu_seconds: [],
  };
  for (let n = 1; n <= steps; n++) {
    const req = firstStepsRequest(prompts, m, n, trainer.status().policyVersion);
    const longest = Math.max(...req.samples.map((s) => s.promptTokenIds.length + s.responseTokenIds.length));
    const s0 = performance.now();
    const sc0 = cpu();
    const r = await trainer.trainStep(req);
    run.step_seconds.push((performance.now() - s0) / 1000);
    run.step_cpu_seconds.push(cpu() - sc0);
    run.seq_lens.push(bucketSeqLen(longest, m.max_seq_len));
    if (r.stats.skipped) throw new Error(`bench learner: step ${n} was skipped (no informative group)`);
  }
  trainer.dispose();
  return run;
}

/** Runs one mode in a child process (bench-learner-warmup-main.js) and returns its answer. */
function childRun(mode: WarmupMode, steps: number, modelDir: string, scratch: string): Promise<FirstStepsRun> {
  const main = join(dirname(fileURLToPath(import.meta.url)), "bench-learner-warmup-main.js");
  const proc = spawn(process.execPath, [main, mode, String(steps), modelDir, scratch], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    proc.once("error", reject);
    proc.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`bench learner: the ${mode} run exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1)!) as FirstStepsRun);
      } catch (err) {
        reject(new Error(`bench learner: the ${mode} run printed no result (${(err as Error).message})`));
      }
    });
  });
}

export async function benchFirstSteps(args: FirstStepsArgs, log: (l: string) => void): Promise<FirstStepsResult> {
  const scratch = await mkdtemp(join(tmpdir(), "rlmesh-bench-first-steps-"));
  try {
    const { modelDir, model } = await benchModel(args, scratch);
    const loadavgBefore = loadavg();
    log(`bench learner --first-steps ${args.steps}: model ${model}; jax-js threads ${jaxThreadCount()}; load average ${loadavgBefore.map((x) => x.toFixed(2)).join(" ")}`);
    const runs: FirstStepsRun[] = [];
    const first_steps_total: Partial<Record<WarmupMode, number>> = {};
    const first_steps_cpu_total: Partial<Record<WarmupMode, number>> = {};
    for (const mode of args.modes) {
      const r = await childRun(mode, args.steps, modelDir, scratch);
      runs.push(r);
      const total = (first_steps_total[mode] = r.step_seconds.reduce((a, x) => a + x, 0));
      const cpuTotal = (first_steps_cpu_total[mode] = r.step_cpu_seconds.reduce((a, x) => a + x, 0));
      log(
        `  warm-up ${mode}: ${mode === "on" ? `warm-up ${r.warmup_seconds.toFixed(2)} s, ${r.warmup_cpu_seconds.toFixed(2)} CPU-s (${r.warmup_shapes.join(", ")}); ` : ""}` +
          `first ${args.steps} steps ${total.toFixed(2)} s, ${cpuTotal.toFixed(2)} CPU-s (load average ${loadavg()[0]!.toFixed(2)})`,
      );
    }
    log(`  step | padded length | ${runs.map((r) => `warm-up ${r.mode}: s, CPU-s`).join(" | ")}`);
    for (let i = 0; i < args.steps; i++)
      log(`  ${String(i + 1).padStart(4)} | ${String(runs[0]!.seq_lens[i]).padStart(13)} | ${runs.map((r) => `${r.step_seconds[i]!.toFixed(2)}, ${r.step_cpu_seconds[i]!.toFixed(2)}`.padStart(20)).join(" | ")}`);
    return { model, jax_threads: jaxThreadCount(), steps: args.steps, runs, first_steps_total, first_steps_cpu_total, loadavg_before: loadavgBefore, loadavg_after: loadavg() };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Entry point of `rlmesh bench learner --first-steps N [--warmup on,off]`; returns the exit code. */
export async function benchFirstStepsCommand(argv: string[]): Promise<number> {
  let args: FirstStepsArgs;
  try {
    args = parseFirstStepsArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const r = await benchFirstSteps(args, args.json ? () => undefined : (l) => console.log(l));
  if (args.json) console.log(JSON.stringify(r));
  return 0;
}
