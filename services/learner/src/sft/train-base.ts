import { copyFile, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";

import {
  buildPolicyGraph,
  initWeights,
  loadModel,
  configFromManifest,
  manifestForConfig,
  recommendedLookahead,
  parameterCount,
  SeededRandom,
  serializeModel,
  writeModelDir,
} from "@rlmesh/shared/model/index";
import type { ModelManifest, PolicyModelConfig } from "@rlmesh/shared/model/index";
import { loadTokenizer, type LoadedTokenizer } from "@rlmesh/shared/tokenizer/index";
import { generateToySuite } from "@rlmesh/shared/toy/index";

import { initJax } from "../model/jax-runtime.js";
import { JaxPolicy } from "../model/jax-policy.js";
import type { WeightTensors } from "../model/jax-policy.js";
import { adamwStep, initAdamW, type AdamWConfig, type AdamWState } from "../optim/adamw.js";
import { clipGradNorm } from "../optim/grad-clip.js";
import { learningRateAt, type LrScheduleConfig } from "../optim/lr-schedule.js";
import { DEFAULT_LENGTH_BUCKET, loadSftExamples, makeSftBatch, numberTokenWeights, sftExamplesFromRows } from "./train-base-data.js";
import type { SftExample } from "./train-base-data.js";
import { trainDreamOn } from "./train-base-dreamon.js";
import { readEvalRows, toyPassAt1 } from "./train-base-eval.js";
import type { PassAt1Result } from "./train-base-eval.js";
import { parseTrainBaseArgs, TRAIN_BASE_PRESETS, type TrainBaseArgs, type TrainBaseSettings } from "./train-base-args.js";

export { TRAIN_BASE_PRESETS, TRAIN_BASE_USAGE, parseTrainBaseArgs, type TrainBaseArgs, type TrainBaseSettings } from "./train-base-args.js";

/** Entry point of `rlmesh train-base`. Returns the process exit code. */
export async function trainBaseCommand(argv: readonly string[]): Promise<number> {
  let args: TrainBaseArgs;
  try {
    args = parseTrainBaseArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  await trainBase(args, (line) => console.log(line));
  return 0;
}

export interface TrainBaseResult {
  steps: number;
  seconds: number;
  finalLoss: number;
  manifest: ModelManifest;
  evals: Record<string, PassAt1Result>;
}

/** Adam of base training (β2 0.98: the shipped model's recipe; the GRPO learner uses 0.999). */
const SFT_ADAM_BETA1 = 0.9;
const SFT_ADAM_BETA2 = 0.98;
const SFT_ADAM_EPS = 1e-8;
/** Held-out splits of the pass@1 evals, and the samples decoded together there. */
const EVAL_SPLITS = ["test-instances", "test-compositional"] as const;
const EVAL_BATCH_SIZE = 50;
/** About this many progress lines per run, at most MAX_LOG_EVERY steps apart. */
const PROGRESS_LINES = 20;
const MAX_LOG_EVERY = 50;
/** The logged loss EMA: keep·ema + add·loss. */
const LOSS_EMA = { keep: 0.95, add: 0.05 } as const;

function fmtDuration(s: number): string {
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - 60 * m)).padStart(2, "0")}s`;
}

/** Trains, writes the model directory, optionally evaluates; progress lines go to `log`. */
export async function trainBase(args: TrainBaseArgs, log: (line: string) => void): Promise<TrainBaseResult> {
  const settings = TRAIN_BASE_PRESETS[args.preset];
  if (args.recipe === "dreamon") return trainDreamOn(args, settings, log);
  const run = await setUpRun(args, settings, log);
  logRunHeader(run, log);
  const trained = await trainLoop(run, log);
  run.policy.dispose();
  return finishRun(run, trained, log);
}

/** Everything one base-training run holds: its inputs, the policy being trained and its optimizer. */
interface BaseRun {
  args: TrainBaseArgs;
  settings: TrainBaseSettings;
  totalSteps: number;
  tok: LoadedTokenizer;
  ids: { mask: number; pad: number; eos: number };
  config: PolicyModelConfig;
  examples: SftExample[];
  trainSource: string;
  /** The run's one RNG: the example order, then each batch's masks. */
  rng: SeededRandom;
  policy: JaxPolicy;
  weights: WeightTensors;
  opt: AdamWState;
  adamCfg: AdamWConfig;
  schedule: LrScheduleConfig;
}

/** What the training loop leaves: steps taken, the loss EMA, its seconds and its start time. */
interface TrainedSteps {
  step: number;
  ema: number;
  seconds: number;
  t0: number;
}

/** Tokenizer, examples, the starting weights, the optimizer and its schedule (the RNG is seeded here, before any draw). */
async function setUpRun(args: TrainBaseArgs, settings: TrainBaseSettings, log: (line: string) => void): Promise<BaseRun> {
  const totalSteps = args.steps ?? settings.steps;
  const tok = await loadTokenizer(args.tokenizer, { requireSpecial: ["mask", "pad", "eos"] });
  const ids = { mask: tok.specialIds.mask!, pad: tok.specialIds.pad!, eos: tok.specialIds.eos! };
  const config: PolicyModelConfig = { ...settings.model, vocabSize: tok.vocabSize };
  const { examples, trainSource } = await loadTrainExamples(args, tok, ids.eos);
  const tooLong = examples.filter((e) => e.promptIds.length + settings.responseBudget > config.maxSeqLen).length;
  if (tooLong > 0)
    log(`warning: ${tooLong} prompts do not fit max_seq_len ${config.maxSeqLen} with the response budget; they are truncated`);

  await initJax();
  const rng = new SeededRandom(args.seed);
  const initBytes = await initialModelBytes(args, config);
  if (args.init) log(`train-base: starting from the weights of ${args.init}`);
  const policy = JaxPolicy.fromModelBytes(initBytes, { nLayers: config.nLayers, vocabSize: config.vocabSize });
  const weights: WeightTensors = policy.initialWeights();
  const opt = initAdamW(weights);
  const adamCfg: AdamWConfig = {
    beta1: SFT_ADAM_BETA1,
    beta2: SFT_ADAM_BETA2,
    eps: SFT_ADAM_EPS,
    weightDecay: settings.weightDecay,
    noDecay: (n: string) => n.endsWith("norm") || n.includes("embedding"),
  };
  const schedule: LrScheduleConfig = {
    baseLr: args.lr ?? settings.lr,
    warmupSteps: settings.warmupSteps,
    decay: "cosine" as const,
    totalSteps,
    minLrRatio: settings.minLrRatio,
  };
  return { args, settings, totalSteps, tok, ids, config, examples, trainSource, rng, policy, weights, opt, adamCfg, schedule };
}

function logRunHeader(run: BaseRun, log: (line: string) => void): void {
  const { args, config, settings } = run;
  log(
    `train-base: config ${args.preset} (d ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads, ff ${config.ffDim}, vocab ${config.vocabSize}, ` +
      `${(parameterCount(config) / 1e6).toFixed(2)} M params), ${run.examples.length} examples (${run.trainSource}), batch ${settings.batchSize}, ${run.totalSteps} steps, seed ${args.seed}, ` +
      `loss weight ${args.lossWeighting.kind === "cart" ? `cart (p ${args.lossWeighting.p})` : "1/t"}`,
  );
}

/** The manifest of the run's model, its `training` record with `extra` (steps, timings, evals). */
function runManifest(run: BaseRun, extra: Record<string, unknown>): ModelManifest {
  const { args, settings } = run;
  return manifestForConfig(run.config, run.ids, {
    special_tokens: { mask: "<|mask|>", pad: "<|pad|>", eos: "<|eos|>" },
    training: {
      seed: args.seed,
      preset: args.preset,
      response_budget: settings.responseBudget,
      ...(args.init ? { init: args.init } : {}),
      ...(args.numberWeight !== 1 ? { number_weight: args.numberWeight } : {}),
      ...(args.trainSize ? { train_size: args.trainSize } : {}),
      loss_weight: args.lossWeighting.kind,
      ...(args.lossWeighting.kind === "cart" ? { cart_p: args.lossWeighting.p } : {}),
      ...extra,
    },
    decoding: { response_budget: settings.responseBudget, lookahead: recommendedLookahead(settings.responseBudget) },
  });
}

/** Greedy pass@1 of the current weights on the first `limit` rows of each held-out split. */
async function evalPassAt1(run: BaseRun, limit: number): Promise<Record<string, PassAt1Result>> {
  const bytes = serializeModel(buildPolicyGraph(run.config, toWeightMap(run.weights)));
  const out: Record<string, PassAt1Result> = {};
  for (const split of EVAL_SPLITS) {
    const rows = await readEvalRows(join(run.args.data, `${split}.jsonl`), limit);
    out[split] = await toyPassAt1(bytes, runManifest(run, {}), run.tok, rows, { responseLength: run.settings.responseBudget, batchSize: EVAL_BATCH_SIZE });
  }
  return out;
}

/** The optimizer steps, with progress lines, periodic evals and snapshots, and the --stop-after / --minutes stops. */
async function trainLoop(run: BaseRun, log: (line: string) => void): Promise<TrainedSteps> {
  const { args, settings, totalSteps } = run;
  const targetWeight = args.numberWeight !== 1 ? numberTokenWeights(run.tok, args.numberWeight) : undefined;
  const t0 = performance.now();
  const sampler = new ExampleSampler(run.examples, run.rng, run.config.maxSeqLen - settings.responseBudget);
  let ema = NaN;
  let step = 0;
  const last = { eval: 0, snapshot: 0 };
  const logEvery = Math.max(1, Math.min(MAX_LOG_EVERY, Math.floor(totalSteps / PROGRESS_LINES)));
  for (; step < totalSteps; step++) {
    const { loss, gradNorm, seqLen } = await sftStep(run, sampler.next(settings.batchSize), targetWeight, step);
    ema = Number.isNaN(ema) ? loss : LOSS_EMA.keep * ema + LOSS_EMA.add * loss;
    const elapsed = (performance.now() - t0) / 1000;
    if ((step + 1) % logEvery === 0 || step === 0) {
      const eta = (elapsed / (step + 1)) * (totalSteps - step - 1);
      log(
        `step ${step + 1}/${totalSteps} loss ${loss.toFixed(4)} (ema ${ema.toFixed(4)}) lr ${learningRateAt(step, run.schedule).toExponential(2)} ` +
          `gnorm ${gradNorm.toFixed(3)} T ${seqLen} ${((elapsed * 1000) / (step + 1)).toFixed(0)} ms/step elapsed ${fmtDuration(elapsed)} eta ${fmtDuration(eta)}`,
      );
    }
    await periodicEvalAndSnapshot(run, step, elapsed, last, log);
    const stop = stopReason(args, step, elapsed);
    if (stop) {
      log(stop);
      step++;
      break;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  log(
    `train-base: trained ${step} steps in ${fmtDuration(seconds)} (${((seconds * 1000) / Math.max(1, step)).toFixed(0)} ms/step), final loss ema ${ema.toFixed(4)}`,
  );
  return { step, ema, seconds, t0 };
}

/** One optimizer step on `chosen` (masks drawn from the run's RNG); throws on a non-finite gradient. */
async function sftStep(
  run: BaseRun,
  chosen: SftExample[],
  targetWeight: Float32Array | undefined,
  step: number,
): Promise<{ loss: number; gradNorm: number; seqLen: number }> {
  const { args, settings } = run;
  const { batch, tokenWeights } = makeSftBatch(chosen, run.rng, {
    maskId: run.ids.mask,
    padId: run.ids.pad,
    responseBudget: settings.responseBudget,
    tMin: settings.tMin,
    lengthBucket: DEFAULT_LENGTH_BUCKET,
    ...(targetWeight ? { targetWeight } : {}),
    weighting: args.lossWeighting,
  });
  const { loss, grads } = await run.policy.weightedNllGrad(run.weights, batch, tokenWeights);
  const clip = clipGradNorm(grads, settings.gradClip);
  if (!clip.finite) throw new Error(`train-base: non-finite gradient at step ${step} (loss ${loss})`);
  adamwStep(run.weights, grads, run.opt, learningRateAt(step, run.schedule), run.adamCfg);
  return { loss, gradNorm: clip.norm, seqLen: batch.seqLen };
}

/** --eval-every-min (on half the eval rows, not after the last step) and --snapshot-dir saves, each on its own clock. */
async function periodicEvalAndSnapshot(
  run: BaseRun,
  step: number,
  elapsed: number,
  last: { eval: number; snapshot: number },
  log: (line: string) => void,
): Promise<void> {
  const { args } = run;
  if (args.evalEveryMinutes > 0 && elapsed - last.eval >= args.evalEveryMinutes * 60 && step + 1 < run.totalSteps) {
    last.eval = elapsed;
    const e = await evalPassAt1(run, Math.max(1, Math.floor(args.evalLimit / 2)));
    log(
      `eval @ step ${step + 1} (${fmtDuration(elapsed)}): ` +
        Object.entries(e)
          .map(([k, v]) => `${k} ${(100 * v.passAt1).toFixed(1)}% (${v.passed}/${v.n})`)
          .join(", "),
    );
  }
  if (args.snapshotDir && elapsed - last.snapshot >= args.snapshotEveryMinutes * 60) {
    last.snapshot = elapsed;
    const dir = join(args.snapshotDir, `step-${step + 1}`);
    await saveModelDir(dir, args.tokenizer, run.config, run.weights, runManifest(run, { steps: step + 1 }));
  }
}

/** The line that ends training early after `step` (--stop-after, then --minutes), or undefined to go on. */
function stopReason(args: TrainBaseArgs, step: number, elapsed: number): string | undefined {
  if (args.stopAfter !== undefined && step + 1 >= args.stopAfter) return `train-base: --stop-after ${args.stopAfter} reached`;
  if (args.minutes !== undefined && elapsed >= args.minutes * 60)
    return `train-base: --minutes ${args.minutes} reached at step ${step + 1}; stopping early`;
  return undefined;
}

/** The final eval (--eval-limit rows), the manifest with the run's record, and the model directory. */
async function finishRun(run: BaseRun, trained: TrainedSteps, log: (line: string) => void): Promise<TrainBaseResult> {
  const { args } = run;
  const { step, ema, seconds, t0 } = trained;
  const evals: Record<string, PassAt1Result> = {};
  if (args.evalLimit > 0) {
    Object.assign(evals, await evalPassAt1(run, args.evalLimit));
    for (const [k, v] of Object.entries(evals)) {
      log(
        `eval ${k}: pass@1 ${(100 * v.passAt1).toFixed(1)}% (${v.passed}/${v.n}, greedy, python3 check) in ${v.seconds.toFixed(0)} s; by family ${JSON.stringify(v.byFamily)}`,
      );
    }
  }
  const manifest = runManifest(run, {
    steps: step,
    train_seconds: Math.round(seconds),
    final_loss_ema: Number(ema.toFixed(4)),
    ...Object.fromEntries(Object.entries(evals).map(([k, v]) => [`pass_at_1_${k}`, Number(v.passAt1.toFixed(4))])),
  });
  const bytes = await saveModelDir(args.out, args.tokenizer, run.config, run.weights, manifest);
  log(
    `train-base: wrote ${join(args.out, "model.onnx")} (${(bytes / 1e6).toFixed(2)} MB) and manifest.json; total ${fmtDuration((performance.now() - t0) / 1000)}`,
  );
  return { steps: step, seconds, finalLoss: ema, manifest, evals };
}

/** The SFT examples: the toy train split on disk, or a larger one generated in memory (--train-size). */
async function loadTrainExamples(args: TrainBaseArgs, tok: LoadedTokenizer, eosId: number): Promise<{ examples: SftExample[]; trainSource: string }> {
  const trainSource = args.trainSize ? `a generated toy train split of ${args.trainSize} rows` : join(args.data, "train.jsonl");
  const examples = args.trainSize
    ? sftExamplesFromRows(generateToySuite({ trainSize: args.trainSize }).train, tok, eosId)
    : await loadSftExamples(join(args.data, "train.jsonl"), tok, eosId);
  if (examples.length === 0) throw new Error(`train-base: no rows with prompt + reference in ${trainSource}`);
  return { examples, trainSource };
}

/** The starting graph: --init's model (same architecture as the preset, checked) or fresh weights. */
async function initialModelBytes(args: TrainBaseArgs, config: PolicyModelConfig): Promise<Uint8Array> {
  if (!args.init) return serializeModel(buildPolicyGraph(config, initWeights(config, args.seed)));
  const init = await loadModel(args.init);
  const initConfig = configFromManifest(init.manifest);
  for (const key of ["vocabSize", "dModel", "nLayers", "nHeads", "ffDim", "tiedEmbeddings"] as const) {
    if ((initConfig[key] ?? false) !== (config[key] ?? false)) {
      throw new Error(`train-base: --init ${args.init} has ${key} ${initConfig[key] ?? false}, the ${args.preset} config has ${config[key] ?? false}`);
    }
  }
  return init.modelBytes;
}

/** Epochs of shuffled examples, prompts cut (from the left) to what fits next to the response budget. */
class ExampleSampler {
  private order: number[];
  private cursor = 0;

  constructor(
    private readonly examples: readonly SftExample[],
    private readonly rng: SeededRandom,
    private readonly maxPrompt: number,
  ) {
    this.order = shuffled(examples.length, rng);
  }

  next(n: number): SftExample[] {
    const chosen: SftExample[] = [];
    for (let i = 0; i < n; i++) {
      if (this.cursor >= this.order.length) {
        this.order = shuffled(this.examples.length, this.rng);
        this.cursor = 0;
      }
      const ex = this.examples[this.order[this.cursor++]!]!;
      chosen.push(ex.promptIds.length > this.maxPrompt ? { ...ex, promptIds: ex.promptIds.slice(-this.maxPrompt) } : ex);
    }
    return chosen;
  }
}

/** Writes a model directory (graph with the weights, manifest, tokenizer); returns the graph's size in bytes. */
async function saveModelDir(
  dir: string,
  tokenizerPath: string,
  config: PolicyModelConfig,
  weights: WeightTensors,
  manifest: Parameters<typeof writeModelDir>[2],
): Promise<number> {
  const bytes = serializeModel(buildPolicyGraph(config, toWeightMap(weights)));
  await writeModelDir(dir, bytes, manifest);
  if (resolve(join(dir, "tokenizer.json")) !== resolve(tokenizerPath)) {
    await mkdir(dir, { recursive: true });
    await copyFile(tokenizerPath, join(dir, "tokenizer.json"));
  }
  return bytes.length;
}

function toWeightMap(w: WeightTensors): Map<string, Float32Array> {
  return new Map(Object.entries(w).map(([k, v]) => [k, v.data]));
}

function shuffled(n: number, rng: SeededRandom): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
