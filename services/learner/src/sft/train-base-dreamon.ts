import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

import { infillRowsFromRows, loadInfillRows } from "@rlmesh/shared/infill/index";
import type { InfillRow } from "@rlmesh/shared/infill/index";
import {
  buildPolicyGraph,
  configFromManifest,
  initWeights,
  loadModel,
  manifestForConfig,
  parameterCount,
  parseModel,
  readWeights,
  recommendedLookahead,
  SeededRandom,
  serializeModel,
  writeModelDir,
} from "@rlmesh/shared/model/index";
import type { ModelManifest, PolicyModelConfig } from "@rlmesh/shared/model/index";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { generateToySuite } from "@rlmesh/shared/toy/index";

import { initJax } from "../model/jax-runtime.js";
import { JaxPolicy } from "../model/jax-policy.js";
import type { WeightTensors } from "../model/jax-policy.js";
import { adamwStep, initAdamW } from "../optim/adamw.js";
import { clipGradNorm } from "../optim/grad-clip.js";
import { learningRateAt } from "../optim/lr-schedule.js";
import { DEFAULT_LENGTH_BUCKET } from "./train-base-data.js";
import { DREAMON_DEFAULTS, EXPAND_TOKEN, growVocab, infillExamples, keepNewVocabGrads, makeDreamOnBatch, NEW_ROW_WARMUP, withExpandToken } from "./train-base-infill.js";
import type { InfillExample } from "./train-base-infill.js";
import { infillPassAt1 } from "./train-base-infill-eval.js";
import type { InfillEvalMode, InfillPassResult } from "./train-base-infill-eval.js";
import type { PassAt1Result } from "./train-base-eval.js";
import type { TrainBaseArgs, TrainBaseResult, TrainBaseSettings } from "./train-base.js";

/** Modes evaluated at the end of a DreamOn run (held-out test-instances infilling rows). */
const FINAL_MODES: readonly InfillEvalMode[] = ["oracle", "variable_from_4", "variable_from_32"];

/**
 * `train-base --recipe dreamon`: DreamOn's variable-length infilling SFT (train-base-infill.ts)
 * on infilling rows of the train split (every qualifying whole-line middle of every row), from
 * --init's weights with the vocabulary grown by `<|expand|>` (EOS plays delete). Writes the model
 * directory with the extended tokenizer and a manifest declaring expand_id.
 */
export async function trainDreamOn(args: TrainBaseArgs, settings: TrainBaseSettings, log: (line: string) => void): Promise<TrainBaseResult> {
  const totalSteps = args.steps ?? settings.steps;
  const work = await mkdtemp(join(tmpdir(), "rlmesh-dreamon-"));
  try {
    const { json, expandId, added } = withExpandToken(JSON.parse(await readFile(args.tokenizer, "utf8")));
    const tokenizerPath = join(work, "tokenizer.json");
    await writeFile(tokenizerPath, JSON.stringify(json, null, 2) + "\n");
    const tok = await loadTokenizer(tokenizerPath, { requireSpecial: ["mask", "pad", "eos"] });
    const ids = { mask: tok.specialIds.mask!, pad: tok.specialIds.pad!, eos: tok.specialIds.eos! };
    log(`train-base (dreamon): ${EXPAND_TOKEN} is id ${expandId}${added ? " (added to the tokenizer)" : ""}; EOS (${ids.eos}) plays delete`);

    const rng = new SeededRandom(args.seed);
    const { config, weights: startWeights, grownFrom } = await startingWeights(args, settings, tok.vocabSize, ids.mask, rng, log);
    const rows = trainInfillRows(args);
    const examples = infillExamples(rows, tok, ids.eos);
    const trainSource = args.trainSize ? `a generated toy train split of ${args.trainSize} rows` : join(args.data, "train.jsonl");

    await initJax();
    const policy = JaxPolicy.fromModelBytes(serializeModel(buildPolicyGraph(config, startWeights)), { nLayers: config.nLayers, vocabSize: config.vocabSize });
    const weights: WeightTensors = policy.initialWeights();
    const opt = initAdamW(weights);
    const adamCfg = { beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: settings.weightDecay, noDecay: (n: string) => n.endsWith("norm") || n.includes("embedding") };
    const schedule = { baseLr: args.lr ?? settings.lr, warmupSteps: settings.warmupSteps, decay: "cosine" as const, totalSteps, minLrRatio: settings.minLrRatio };
    // The DreamOn flags with their defaults, once: the batches, the log line and the manifest read them.
    const variant = {
      timeWeight: args.dreamonTimeWeight ?? "linear",
      maxDelete: args.dreamonMaxDelete ?? DREAMON_DEFAULTS.maxDelete,
      exactShare: args.dreamonExactShare ?? 0,
      uniformCountShare: args.dreamonUniformMerges ?? 0,
      mergePlacement: args.dreamonMergePlacement ?? "random",
    } as const;
    const trunkLrScale = args.trunkLrScale ?? 1;
    log(
      `train-base (dreamon): d ${config.dModel}, ${config.nLayers} layers, vocab ${config.vocabSize} (${(parameterCount(config) / 1e6).toFixed(2)} M params), ` +
        `${examples.length} infilling rows from ${rows.length === 0 ? 0 : new Set(rows.map((r) => r.source_task_id)).size} rows of ${trainSource}, batch ${settings.batchSize}, ` +
        `${totalSteps} steps, lr ${schedule.baseLr}, seed ${args.seed}, time weight ${variant.timeWeight}, ` +
        `max delete ${variant.maxDelete}, exact share ${variant.exactShare}, uniform merges ${variant.uniformCountShare}, merges at ${variant.mergePlacement}, trunk lr × ${trunkLrScale}`,
    );

    const manifestNow = (extra: Record<string, unknown>): ModelManifest =>
      manifestForConfig(config, ids, {
        name: basename(args.out),
        expand_id: expandId,
        special_tokens: { mask: "<|mask|>", pad: "<|pad|>", eos: "<|eos|>", expand: EXPAND_TOKEN },
        training: {
          recipe: "dreamon",
          seed: args.seed,
          preset: args.preset,
          ...(args.init ? { init: args.init } : {}),
          ...(args.trainSize ? { train_size: args.trainSize } : {}),
          dreamon: {
            ...DREAMON_DEFAULTS,
            maxDelete: variant.maxDelete,
            exact_share: variant.exactShare,
            uniform_merge_count_share: variant.uniformCountShare,
            merge_placement: variant.mergePlacement,
            trunk_lr_scale: trunkLrScale,
            eos_plays_delete: true,
            weight: variant.timeWeight === "inv_t" ? "1/t, t ~ U(0.05, 1)" : "1 - t, t ~ U(0, 1)",
            eos_loss: "each row's EOS averaged apart and added as one token of the row",
            merges: "chained (a run of masks may collapse into one <|expand|>)",
            ...(grownFrom !== undefined ? { new_row_warmup: { ...NEW_ROW_WARMUP, note: "only the new embedding rows train, constant LR, before the schedule" } } : {}),
          },
          ...extra,
        },
        decoding: { response_budget: settings.responseBudget, lookahead: recommendedLookahead(settings.responseBudget) },
      });
    const heldout = loadInfillRows(join(args.data, "test-instances.jsonl"), "heldout", { seed: 1 });
    const evalNow = async (limit: number, modes: readonly InfillEvalMode[]): Promise<Record<string, InfillPassResult>> => {
      const bytes = serializeModel(buildPolicyGraph(config, toWeightMap(weights)));
      const out: Record<string, InfillPassResult> = {};
      for (const mode of modes) out[mode] = await infillPassAt1(bytes, manifestNow({}), tok, heldout.slice(0, limit), mode);
      return out;
    };
    const fmtEval = (e: Record<string, InfillPassResult>) =>
      Object.values(e)
        .map((v) => `${v.mode} ${(100 * v.passAt1).toFixed(1)}% (${v.passed}/${v.n}, len err ${v.meanLengthError.toFixed(2)})`)
        .join(", ");

    const sampler = new Epochs(examples, rng);
    const batchOpts = {
      maskId: ids.mask,
      padId: ids.pad,
      eosId: ids.eos,
      expandId,
      ...DREAMON_DEFAULTS,
      maxSeqLen: config.maxSeqLen,
      lengthBucket: DEFAULT_LENGTH_BUCKET,
      ...variant,
    };
    const t0 = performance.now();
    if (grownFrom !== undefined) {
      // The new rows first, alone (see NEW_ROW_WARMUP): the rest of the model stays as --init left it.
      const warmOpt = initAdamW(weights);
      for (let s = 0; s < NEW_ROW_WARMUP.steps; s++) {
        const b = makeDreamOnBatch(sampler.next(settings.batchSize), rng, batchOpts);
        const { loss, grads, logProbs } = await policy.weightedNllGrad(weights, b.batch, b.tokenWeights);
        keepNewVocabGrads(grads, grownFrom, config.vocabSize, config.dModel);
        adamwStep(weights, grads, warmOpt, NEW_ROW_WARMUP.lr, { ...adamCfg, weightDecay: 0 });
        let nll = 0;
        for (let k = 0; k < logProbs.length; k++) if (b.tokenWeights[k]! > 0 && b.batch.targets[k] === expandId) nll -= logProbs[k]!;
        log(`new-row warm-up ${s + 1}/${NEW_ROW_WARMUP.steps}: loss ${loss.toFixed(4)}, mean NLL of the ${b.expandLabels} expand labels ${(nll / Math.max(1, b.expandLabels)).toFixed(2)}`);
      }
    }
    let ema = NaN;
    let step = 0;
    let lastEval = 0;
    let lastSnapshot = 0;
    const counts = { tokens: 0, eos: 0, expand: 0 };
    const logEvery = Math.max(1, Math.min(50, Math.floor(totalSteps / 20)));
    for (; step < totalSteps; step++) {
      const b = makeDreamOnBatch(sampler.next(settings.batchSize), rng, batchOpts);
      counts.tokens += b.tokenLosses;
      counts.eos += b.eosLosses;
      counts.expand += b.expandLabels;
      const { loss, grads } = await policy.weightedNllGrad(weights, b.batch, b.tokenWeights);
      const clip = clipGradNorm(grads, settings.gradClip);
      if (!clip.finite) throw new Error(`train-base (dreamon): non-finite gradient at step ${step} (loss ${loss})`);
      const before = trunkLrScale < 1 ? snapshotWeights(weights) : undefined;
      adamwStep(weights, grads, opt, learningRateAt(step, schedule), adamCfg);
      if (before) scaleTrunkUpdate(weights, before, trunkLrScale, grownFrom ?? expandId, config.vocabSize, config.dModel); // the <|expand|> row keeps the full LR, grown now or by --init
      ema = Number.isNaN(ema) ? loss : 0.95 * ema + 0.05 * loss;
      const elapsed = (performance.now() - t0) / 1000;
      if ((step + 1) % logEvery === 0 || step === 0) {
        const eta = (elapsed / (step + 1)) * (totalSteps - step - 1);
        log(
          `step ${step + 1}/${totalSteps} loss ${loss.toFixed(4)} (ema ${ema.toFixed(4)}) lr ${learningRateAt(step, schedule).toExponential(2)} gnorm ${clip.norm.toFixed(3)} ` +
            `T ${b.batch.seqLen} masked ${counts.tokens} eos ${counts.eos} expand ${counts.expand} ${((elapsed * 1000) / (step + 1)).toFixed(0)} ms/step ` +
            `elapsed ${fmtDuration(elapsed)} eta ${fmtDuration(eta)}`,
        );
      }
      if (args.evalEveryMinutes > 0 && elapsed - lastEval >= args.evalEveryMinutes * 60 && step + 1 < totalSteps) {
        lastEval = elapsed;
        log(`eval @ step ${step + 1} (${fmtDuration(elapsed)}): ${fmtEval(await evalNow(Math.max(1, Math.floor(args.evalLimit / 2)), ["oracle", "variable_from_4"]))}`);
      }
      if (args.snapshotDir && elapsed - lastSnapshot >= args.snapshotEveryMinutes * 60) {
        lastSnapshot = elapsed;
        await saveDir(join(args.snapshotDir, `step-${step + 1}`), tokenizerPath, config, weights, manifestNow({ steps: step + 1 }));
        log(`snapshot: ${join(args.snapshotDir, `step-${step + 1}`)}`);
      }
      if (args.stopAfter !== undefined && step + 1 >= args.stopAfter) {
        log(`train-base: --stop-after ${args.stopAfter} reached`);
        step++;
        break;
      }
      if (args.minutes !== undefined && elapsed >= args.minutes * 60) {
        log(`train-base: --minutes ${args.minutes} reached at step ${step + 1}; stopping early`);
        step++;
        break;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    log(`train-base (dreamon): trained ${step} steps in ${fmtDuration(seconds)} (${((seconds * 1000) / Math.max(1, step)).toFixed(0)} ms/step), final loss ema ${ema.toFixed(4)}`);
    policy.dispose();

    const infillEvals = args.evalLimit > 0 ? await evalNow(args.evalLimit, FINAL_MODES) : {};
    if (args.evalLimit > 0) log(`eval test-instances infilling (greedy, python3 check): ${fmtEval(infillEvals)}`);
    const manifest = manifestNow({
      steps: step,
      train_seconds: Math.round(seconds),
      final_loss_ema: Number(ema.toFixed(4)),
      ...Object.fromEntries(Object.values(infillEvals).map((v) => [`infill_pass_at_1_${v.mode}`, Number(v.passAt1.toFixed(4))])),
    });
    const bytes = await saveDir(args.out, tokenizerPath, config, weights, manifest);
    log(`train-base (dreamon): wrote ${join(args.out, "model.onnx")} (${(bytes / 1e6).toFixed(2)} MB), manifest.json and tokenizer.json`);
    const evals: Record<string, PassAt1Result> = {};
    for (const v of Object.values(infillEvals)) {
      evals[`infill_${v.mode}`] = { n: v.n, passed: v.passed, passAt1: v.passAt1, byFamily: {}, seconds: v.seconds, samples: v.samples.map((s) => ({ task_id: s.task_id, response: s.middle, pass: s.pass })) };
    }
    return { steps: step, seconds, finalLoss: ema, manifest, evals };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Every qualifying whole-line middle of every training row: datasets' train.jsonl, or a generated split (--train-size). */
function trainInfillRows(args: TrainBaseArgs): InfillRow[] {
  if (!args.trainSize) return loadInfillRows(join(args.data, "train.jsonl"), "train", { seed: args.seed, allSpans: true });
  const rows = generateToySuite({ trainSize: args.trainSize }).train.map((r) => ({ ...r, source: "rlmesh" as const }));
  return infillRowsFromRows(rows, { seed: args.seed, allSpans: true, file: "generated train split" });
}

/** --init's weights (its own architecture; the vocabulary grown by the new tokens) or a fresh init of the preset. */
async function startingWeights(
  args: TrainBaseArgs,
  settings: TrainBaseSettings,
  vocabSize: number,
  maskId: number,
  rng: SeededRandom,
  log: (line: string) => void,
): Promise<{ config: PolicyModelConfig; weights: Map<string, Float32Array>; grownFrom?: number }> {
  if (!args.init) {
    const config = { ...settings.model, vocabSize };
    return { config, weights: initWeights(config, args.seed) };
  }
  const init = await loadModel(args.init);
  const initConfig = configFromManifest(init.manifest);
  if (initConfig.vocabSize > vocabSize) throw new Error(`train-base: --init ${args.init} has vocab ${initConfig.vocabSize}, more than the tokenizer's ${vocabSize}`);
  const config = { ...initConfig, vocabSize };
  const read = new Map([...readWeights(parseModel(init.modelBytes))].map(([k, v]) => [k, v.data]));
  if (initConfig.vocabSize === vocabSize) return { config, weights: read };
  log(`train-base: --init ${args.init}: vocab ${initConfig.vocabSize} → ${vocabSize}, new embedding rows start from the MASK row (+ noise 0.01)`);
  return { config, weights: growVocab(read, initConfig.vocabSize, vocabSize, config.dModel, maskId, rng), grownFrom: initConfig.vocabSize };
}

class Epochs {
  private order: number[] = [];
  private cursor = 0;
  constructor(
    private readonly examples: readonly InfillExample[],
    private readonly rng: SeededRandom,
  ) {}
  next(n: number): InfillExample[] {
    const out: InfillExample[] = [];
    for (let i = 0; i < n; i++) {
      if (this.cursor >= this.order.length) {
        this.order = Array.from({ length: this.examples.length }, (_, k) => k);
        for (let k = this.order.length - 1; k > 0; k--) {
          const j = this.rng.int(k + 1);
          [this.order[k], this.order[j]] = [this.order[j]!, this.order[k]!];
        }
        this.cursor = 0;
      }
      out.push(this.examples[this.order[this.cursor++]!]!);
    }
    return out;
  }
}

async function saveDir(dir: string, tokenizerPath: string, config: PolicyModelConfig, weights: WeightTensors, manifest: ModelManifest): Promise<number> {
  const bytes = serializeModel(buildPolicyGraph(config, toWeightMap(weights)));
  await writeModelDir(dir, bytes, manifest);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "tokenizer.json"), await readFile(tokenizerPath));
  return bytes.length;
}

function snapshotWeights(w: WeightTensors): Record<string, Float32Array> {
  return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, v.data.slice()]));
}

/**
 * Scales, in place, the update just applied to every weight but the new vocabulary rows
 * ([newFrom, vocab) of tok_embedding, and of an untied lm_head's columns): w = w₀ + s·(w − w₀),
 * which for AdamW (update and decoupled decay both ∝ LR) is the same step at s × the LR.
 */
export function scaleTrunkUpdate(w: WeightTensors, before: Record<string, Float32Array>, s: number, newFrom: number, vocab: number, dModel: number): void {
  for (const [name, t] of Object.entries(w)) {
    const old = before[name];
    if (!old || old.length !== t.data.length) throw new Error(`scaleTrunkUpdate: no snapshot of ${name} with ${t.data.length} values`);
    const d = t.data;
    const keep = (i: number): boolean => {
      if (name === "tok_embedding") return i >= newFrom * dModel;
      if (name === "lm_head") return i % vocab >= newFrom;
      return false;
    };
    for (let i = 0; i < d.length; i++) if (!keep(i)) d[i] = old[i]! + s * (d[i]! - old[i]!);
  }
}

function toWeightMap(w: WeightTensors): Map<string, Float32Array> {
  return new Map(Object.entries(w).map(([k, v]) => [k, v.data]));
}

function fmtDuration(s: number): string {
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - 60 * m)).padStart(2, "0")}s`;
}
