/**
 * `rlmesh bench decode [--json]`: decoding speed and quality of the shipped model on the
 * held-out toy tasks for the four modes of issue 5 (vanilla, parallel, prefix, dual), at
 * each generation length, plus batch-8 vs batch-1 throughput. Greedy decoding (temperature
 * 0), one sample per task, so pass@1 is the fraction of tasks solved.
 */
import { resolve } from "node:path";
import { loadDataset, type CanonicalRow } from "@rlmesh/shared/datasets/index";
import { DECODE_MODES, decodeModeParams, type DecodeMode, type DecodeParamsInput } from "./decoding/decode-params.js";
import { withModelLookahead } from "./decoding/model-lookahead.js";
import { loadRolloutModel, OrtRolloutEngine, type BatchStats, type GeneratedSample } from "./runtime/ort-rollout-engine.js";
import { passesWithPython } from "./python-check.js";

export const DEFAULT_BENCH_MODEL_DIR = "models/tiny-coder";
export const DEFAULT_BENCH_DATASET = "datasets/toy/test-instances.jsonl";
export const DEFAULT_BENCH_GEN_LENGTHS = [256, 128];
export const DEFAULT_BENCH_TASKS = 40;
export const DEFAULT_BENCH_BLOCK_LENGTH = 32;
/** pass@1 a faster mode may lose against vanilla and still count (issue 5: 2 points). */
export const QUALITY_TOLERANCE = 0.02;
/** Batch size of the batched-throughput comparison. */
export const BENCH_BATCH = 8;

export interface ModeResult {
  /** Response positions resolved per second (samples × gen_length / seconds), as Fast-dLLM counts. */
  tokens_per_s: number;
  /** Response tokens up to and including EOS per second. */
  response_tokens_per_s: number;
  /** Forward passes per response token (up to and including EOS). */
  nfe_per_token: number;
  pass_at_1: number | null;
  seconds: number;
  full_forwards: number;
  cached_forwards: number;
}

export interface GenLengthResult {
  gen_length: number;
  /** Set when the requested length did not fit the model's max_seq_len. */
  requested_gen_length?: number;
  modes: Partial<Record<DecodeMode, ModeResult>>;
  speedup_best: number;
  best_mode: DecodeMode | null;
  /** Best speedup among modes whose pass@1 is within QUALITY_TOLERANCE of vanilla's. */
  speedup_best_within_tolerance: number;
  best_mode_within_tolerance: DecodeMode | null;
  /** Masked positions past the block the model saw (0 = the whole canvas). */
  lookahead: number;
}

export interface BenchDecodeReport extends GenLengthResult {
  /** Wall seconds of the prompts one at a time over the same prompts as one batch. */
  batch8_vs_batch1: number | null;
  /**
   * The same ratio in process CPU seconds: a load change between the two halves moves the wall
   * ratio (measured: 0.29 and 2.56 for the same comparison), much less this one.
   */
  batch8_vs_batch1_cpu: number | null;
  batch_mode: DecodeMode | null;
  runs: GenLengthResult[];
  tasks: number;
  evaluator: string;
  model: string;
  intra_op_threads: number;
  eos_fill: boolean;
  pad_penalty: number;
  /** Peak resident memory of the process (the decode workers are its threads), MB. */
  peak_rss_mb: number;
  notes: string[];
}

/** Scores responses by task id; returns passed/total and what scored them. */
export type PassEvaluator = (
  rows: CanonicalRow[],
  responses: Map<string, string>,
) => Promise<{ passed: number; total: number; evaluator: string }>;

export interface BenchDecodeOptions {
  modelDir: string;
  dataset: string;
  tasks: number;
  genLengths: number[];
  modes: DecodeMode[];
  threads: number;
  evaluator: "sandbox" | "python" | "none";
  batchCompare: boolean;
  /**
   * Only the batch comparison (at the first gen length, in the first mode): skips the per-mode
   * table, whose batch-1 calls the comparison repeats anyway. For slow models (an imported 218 M
   * model on CPU), where each pass takes tens of minutes.
   */
  batchOnly?: boolean;
  /** Write PAD after the first EOS as soon as it is committed (all modes alike). @defaultValue true */
  eosFill: boolean;
  /** Dream-Coder PAD penalty. @defaultValue 0 */
  padPenalty: number;
  /** Masked positions past the current block the model sees (0 = all). @defaultValue the model's recommendation */
  lookahead?: number;
}

export const pythonEvaluator: PassEvaluator = async (rows, responses) => ({
  passed: rows.filter((r) => passesWithPython(r, responses.get(r.task_id) ?? "")).length,
  total: rows.length,
  evaluator: "python3 on the host (no sandbox)",
});

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export async function runDecodeBench(
  opts: BenchDecodeOptions,
  evaluator: PassEvaluator | null,
  log: (line: string) => void = () => {},
): Promise<BenchDecodeReport> {
  let evaluate = evaluator;
  const model = await loadRolloutModel(resolve(opts.modelDir));
  const rows = loadDataset(resolve(opts.dataset)).slice(0, opts.tasks);
  if (rows.length === 0) throw new Error(`${opts.dataset}: no tasks`);
  const notes: string[] = [];
  const codec = model.codec!;
  const longestPrompt = Math.max(...rows.map((r) => codec.encode(r.prompt).length));
  const maxFit = model.manifest.max_seq_len - longestPrompt;
  if (maxFit < 1)
    throw new Error(`the longest prompt (${longestPrompt} tokens) leaves no room in max_seq_len ${model.manifest.max_seq_len}`);
  const stats: BatchStats[] = [];
  const engine = await OrtRolloutEngine.create({ model, replicas: 1, intraOpNumThreads: opts.threads, onBatch: (s) => stats.push(s) });
  try {
    const requests = rows.map((r) => ({ promptId: r.task_id, prompt: r.prompt, samples: 1, seed: 0 }));
    const baseParams = (gen: number): DecodeParamsInput => ({
      max_new_tokens: gen,
      block_length: DEFAULT_BENCH_BLOCK_LENGTH,
      temperature: 0,
      alg: "maskgit_plus",
      eos_fill: opts.eosFill,
      pad_penalty: opts.padPenalty,
      ...(opts.lookahead !== undefined ? { lookahead: opts.lookahead } : {}),
    });
    // Resolved here, so the model's lookahead recommendation (which the engine applies only to
    // unresolved requests) is applied as it would be to a Generate call.
    const modeParams = (mode: DecodeMode, gen: number) => withModelLookahead(decodeModeParams(mode, baseParams(gen)), baseParams(gen), model.manifest);
    // Timed by generate call; modes are interleaved task by task so that load from other
    // processes on the host falls on every mode alike.
    interface Tally {
      seconds: number;
      /** Process CPU seconds (user + system, every thread: the decode workers run in-process). */
      cpuSeconds: number;
      samples: GeneratedSample[];
      full: number;
      cached: number;
    }
    const newTally = (): Tally => ({ seconds: 0, cpuSeconds: 0, samples: [], full: 0, cached: 0 });
    const timeCall = async (t: Tally, mode: DecodeMode, gen: number, reqs: typeof requests, maxBatch: number) => {
      stats.length = 0;
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const res = await engine.generateSamples(reqs, modeParams(mode, gen), { maxBatch });
      t.seconds += (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      t.cpuSeconds += (c.user + c.system) / 1e6;
      t.samples.push(...res.samples);
      for (const s of stats) {
        t.full += s.forwards.full;
        t.cached += s.forwards.cached;
      }
    };
    // Warm-up: first session runs allocate and optimise.
    await engine.generateSamples(requests.slice(0, 2), decodeModeParams("dual", baseParams(Math.min(DEFAULT_BENCH_BLOCK_LENGTH, maxFit))));

    const runs: GenLengthResult[] = [];
    let evaluatorName = evaluate ? "" : "none";
    const fitted = (requested: number): number => {
      if (requested <= maxFit) return requested;
      // The largest whole number of blocks that fits (or all that is left when less than a block).
      const gen = Math.floor(maxFit / DEFAULT_BENCH_BLOCK_LENGTH) * DEFAULT_BENCH_BLOCK_LENGTH || maxFit;
      notes.push(
        `gen_length ${requested} does not fit: max_seq_len ${model.manifest.max_seq_len} - longest prompt ${longestPrompt} = ${maxFit}; measured at ${gen}`,
      );
      return gen;
    };
    if (opts.batchOnly) {
      const requested = opts.genLengths[0]!;
      const gen = fitted(requested);
      runs.push({
        gen_length: gen,
        ...(gen !== requested ? { requested_gen_length: requested } : {}),
        modes: {},
        speedup_best: 0,
        best_mode: null,
        speedup_best_within_tolerance: 0,
        best_mode_within_tolerance: null,
        lookahead: modeParams(opts.modes[0] ?? "dual", gen).lookahead,
      });
    }
    for (const requested of opts.batchOnly ? [] : opts.genLengths) {
      const gen = fitted(requested);
      if (runs.some((r) => r.gen_length === gen)) continue;
      const tallies = new Map(opts.modes.map((m) => [m, newTally()]));
      for (const req of requests) for (const mode of opts.modes) await timeCall(tallies.get(mode)!, mode, gen, [req], 1);
      const modes: Partial<Record<DecodeMode, ModeResult>> = {};
      for (const mode of opts.modes) {
        const t = tallies.get(mode)!;
        const responseTokens = t.samples.reduce((a, s) => a + Math.max(1, s.tokenIds.length), 0);
        const nfe = t.samples.reduce((a, s) => a + s.nfe, 0);
        let pass: number | null = null;
        if (evaluate) {
          const responses = new Map(t.samples.map((s) => [s.promptId, s.text]));
          let r: Awaited<ReturnType<PassEvaluator>>;
          try {
            r = await evaluate(rows, responses);
          } catch (e) {
            if (evaluate === pythonEvaluator) throw e;
            notes.push(
              `${evaluatorName || "evaluator"} failed (${(e as Error).message.split("\n")[0]}); scored with plain python3 instead`,
            );
            evaluate = pythonEvaluator;
            r = await evaluate(rows, responses);
          }
          evaluatorName = r.evaluator;
          pass = round(r.passed / r.total);
        }
        modes[mode] = {
          tokens_per_s: round((t.samples.length * gen) / t.seconds, 1),
          response_tokens_per_s: round(responseTokens / t.seconds, 1),
          nfe_per_token: round(nfe / responseTokens),
          pass_at_1: pass,
          seconds: round(t.seconds, 2),
          full_forwards: t.full,
          cached_forwards: t.cached,
        };
        log(`gen ${gen} ${mode.padEnd(8)} ${JSON.stringify(modes[mode])}`);
      }
      const vanilla = modes.vanilla;
      let best: DecodeMode | null = null;
      let speedup = 0;
      let bestOk: DecodeMode | null = null;
      let speedupOk = 0;
      for (const mode of opts.modes) {
        if (mode === "vanilla" || !vanilla) continue;
        const m = modes[mode]!;
        const s = m.tokens_per_s / vanilla.tokens_per_s;
        if (s > speedup) {
          speedup = s;
          best = mode;
        }
        const qualityOk = m.pass_at_1 === null || vanilla.pass_at_1 === null || m.pass_at_1 >= vanilla.pass_at_1 - QUALITY_TOLERANCE;
        if (qualityOk && s > speedupOk) {
          speedupOk = s;
          bestOk = mode;
        }
      }
      runs.push({
        gen_length: gen,
        ...(gen !== requested ? { requested_gen_length: requested } : {}),
        modes,
        speedup_best: round(speedup, 2),
        best_mode: best,
        speedup_best_within_tolerance: round(speedupOk, 2),
        best_mode_within_tolerance: bestOk,
        lookahead: modeParams("dual", gen).lookahead,
      });
    }

    let batchRatio: number | null = null;
    let batchCpuRatio: number | null = null;
    const primary = runs[0]!;
    const batchMode = opts.batchOnly ? (opts.modes[0] ?? null) : (primary.best_mode ?? opts.modes[0] ?? null);
    if ((opts.batchCompare || opts.batchOnly) && batchMode) {
      const one = newTally();
      const eight = newTally();
      const rss = () => `peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB`;
      // Per group: the batched call first, then the same prompts one at a time; each call logged.
      for (let i = 0; i < requests.length; i += BENCH_BATCH) {
        const group = requests.slice(i, i + BENCH_BATCH);
        const s8 = eight.seconds;
        await timeCall(eight, batchMode, primary.gen_length, group, BENCH_BATCH);
        const cpu = (t: Tally) => `${t.cpuSeconds.toFixed(1)} CPU-s`;
        log(`batch of ${group.length} (${batchMode}, gen ${primary.gen_length}): ${(eight.seconds - s8).toFixed(2)} s, ${cpu(eight)}, ${rss()}`);
        for (const [k, req] of group.entries()) {
          const s1 = one.seconds;
          await timeCall(one, batchMode, primary.gen_length, [req], 1);
          log(`  alone ${k + 1}/${group.length}: ${(one.seconds - s1).toFixed(2)} s (${one.seconds.toFixed(2)} s, ${cpu(one)} so far), ${rss()}`);
        }
      }
      batchRatio = round(one.seconds / eight.seconds, 2);
      batchCpuRatio = eight.cpuSeconds > 0 ? round(one.cpuSeconds / eight.cpuSeconds, 2) : null;
      log(
        `batch ${BENCH_BATCH} vs 1 (${batchMode}, gen ${primary.gen_length}): ${one.seconds.toFixed(2)} s vs ${eight.seconds.toFixed(2)} s wall, ` +
          `${one.cpuSeconds.toFixed(1)} vs ${eight.cpuSeconds.toFixed(1)} CPU-s`,
      );
    }
    return {
      ...primary,
      batch8_vs_batch1: batchRatio,
      batch8_vs_batch1_cpu: batchCpuRatio,
      batch_mode: batchMode,
      runs,
      tasks: rows.length,
      evaluator: evaluatorName,
      model: `${model.manifest.name} (${opts.modelDir})`,
      intra_op_threads: opts.threads,
      eos_fill: opts.eosFill,
      pad_penalty: opts.padPenalty,
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      notes,
    };
  } finally {
    await engine.close();
  }
}

export function formatBenchTable(r: BenchDecodeReport): string {
  const lines: string[] = [];
  for (const run of r.runs) {
    lines.push(
      `gen_length ${run.gen_length}${run.requested_gen_length ? ` (requested ${run.requested_gen_length})` : ""}, lookahead ${run.lookahead || "off (whole canvas)"}`,
    );
    lines.push(
      `  ${"mode".padEnd(9)} ${"tokens/s".padStart(9)} ${"resp tok/s".padStart(10)} ${"NFE/token".padStart(9)} ${"pass@1".padStart(7)} ${"seconds".padStart(8)}`,
    );
    for (const [mode, m] of Object.entries(run.modes)) {
      lines.push(
        `  ${mode.padEnd(9)} ${m.tokens_per_s.toFixed(1).padStart(9)} ${m.response_tokens_per_s.toFixed(1).padStart(10)} ${m.nfe_per_token.toFixed(3).padStart(9)} ${(m.pass_at_1 === null ? "-" : (m.pass_at_1 * 100).toFixed(1) + "%").padStart(7)} ${m.seconds.toFixed(2).padStart(8)}`,
      );
    }
    lines.push(
      `  speedup_best ${run.speedup_best}x (${run.best_mode ?? "-"}); within ${QUALITY_TOLERANCE * 100} pts of vanilla pass@1: ${run.speedup_best_within_tolerance}x (${run.best_mode_within_tolerance ?? "-"})`,
    );
  }
  lines.push(`batch${BENCH_BATCH}_vs_batch1 ${r.batch8_vs_batch1 ?? "-"}x wall, ${r.batch8_vs_batch1_cpu ?? "-"}x CPU (${r.batch_mode ?? "-"})`);
  lines.push(`tasks ${r.tasks}, evaluator ${r.evaluator}, intra-op threads ${r.intra_op_threads}, peak RSS ${r.peak_rss_mb} MB`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}

export const BENCH_DECODE_USAGE =
  "rlmesh bench decode [--json] [--model DIR] [--dataset FILE] [--tasks N] [--gen-lengths 256,128] [--modes vanilla,parallel,prefix,dual] [--threads N] [--evaluator sandbox|python|none] [--no-batch | --batch-only] [--no-eos-fill] [--pad-penalty X] [--lookahead N]";

export function parseBenchDecodeArgs(argv: readonly string[]): BenchDecodeOptions & { json: boolean } {
  const o: BenchDecodeOptions & { json: boolean } = {
    json: false,
    modelDir: DEFAULT_BENCH_MODEL_DIR,
    dataset: DEFAULT_BENCH_DATASET,
    tasks: DEFAULT_BENCH_TASKS,
    genLengths: DEFAULT_BENCH_GEN_LENGTHS,
    modes: [...DECODE_MODES],
    threads: 1,
    evaluator: "sandbox",
    batchCompare: true,
    eosFill: true,
    padPenalty: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const posInt = (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} must be a positive integer, got ${v}`);
      return n;
    };
    if (a === "--json") o.json = true;
    else if (a === "--model") o.modelDir = value();
    else if (a === "--dataset") o.dataset = value();
    else if (a === "--tasks") o.tasks = posInt(value());
    else if (a === "--threads") o.threads = posInt(value());
    else if (a === "--gen-lengths") o.genLengths = value().split(",").map(posInt);
    else if (a === "--modes") {
      o.modes = value().split(",") as DecodeMode[];
      for (const m of o.modes) if (!DECODE_MODES.includes(m)) throw new Error(`--modes: unknown mode ${m} (${DECODE_MODES.join(", ")})`);
    } else if (a === "--evaluator") {
      const v = value();
      if (v !== "sandbox" && v !== "python" && v !== "none") throw new Error(`--evaluator must be sandbox, python or none`);
      o.evaluator = v;
    } else if (a === "--no-batch") o.batchCompare = false;
    else if (a === "--batch-only") o.batchOnly = true;
    else if (a === "--no-eos-fill") o.eosFill = false;
    else if (a === "--pad-penalty") {
      const v = Number(value());
      if (!(v >= 0)) throw new Error(`--pad-penalty must be >= 0`);
      o.padPenalty = v;
    } else if (a === "--lookahead") {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) throw new Error(`--lookahead must be an integer >= 0 (0 = the whole canvas)`);
      o.lookahead = v;
    } else throw new Error(`unknown option ${a}`);
  }
  if (o.batchOnly && !o.batchCompare) throw new Error("--batch-only and --no-batch contradict each other");
  return o;
}

/**
 * Entry point of `rlmesh bench decode`. Returns the exit code. `evaluate` overrides how
 * pass@1 is scored; `sandboxEvaluator` is how `--evaluator sandbox` scores it (the CLI, the
 * composition root, injects the executor's runEval: rollout does not depend on the executor).
 */
export async function benchDecodeCommand(
  argv: string[],
  deps: {
    evaluate?: PassEvaluator;
    sandboxEvaluator?: () => Promise<PassEvaluator>;
    out?: (s: string) => void;
    err?: (s: string) => void;
  } = {},
): Promise<number> {
  const out = deps.out ?? ((s: string) => process.stdout.write(s + "\n"));
  const err = deps.err ?? ((s: string) => process.stderr.write(s + "\n"));
  let opts: ReturnType<typeof parseBenchDecodeArgs>;
  try {
    opts = parseBenchDecodeArgs(argv);
  } catch (e) {
    err(`rlmesh bench decode: ${(e as Error).message}\nusage: ${BENCH_DECODE_USAGE}`);
    return 2;
  }
  let evaluate: PassEvaluator | null = deps.evaluate ?? null;
  if (!evaluate && opts.evaluator === "sandbox") {
    try {
      if (!deps.sandboxEvaluator) throw new Error("no sandbox evaluator was given (run it through `rlmesh bench decode`)");
      evaluate = await deps.sandboxEvaluator();
    } catch (e) {
      err(`sandbox eval unavailable (${(e as Error).message}); scoring with plain python3 instead`);
      evaluate = pythonEvaluator;
    }
  } else if (!evaluate && opts.evaluator === "python") evaluate = pythonEvaluator;
  const report = await runDecodeBench(opts, evaluate, opts.json ? (l) => err(l) : (l) => err(l));
  out(opts.json ? JSON.stringify(report) : formatBenchTable(report));
  return 0;
}
