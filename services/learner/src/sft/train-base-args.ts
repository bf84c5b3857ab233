// The settings and the command line of `rlmesh train-base`: the presets (tiny, ci), the run's
// arguments and their parser (every error names its flag).
import { CI_CONFIG, TINY_CONFIG, type PolicyModelConfig } from "@rlmesh/shared/model/index";

import { DEFAULT_CART_P, parseLossWeighting, type LossWeighting } from "../grpo/cart-weights.js";
import { DEFAULT_T_MIN } from "./train-base-data.js";
import type { MergePlacement } from "./train-base-infill.js";

/** Hyper-parameters of one base-training run; `tiny` is the shipped model, `ci` a seconds-long smoke run. */
export interface TrainBaseSettings {
  model: Omit<PolicyModelConfig, "vocabSize">;
  steps: number;
  batchSize: number;
  lr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  gradClip: number;
  /** Response positions per example (reference + EOS + PAD); also the decode length for eval. */
  responseBudget: number;
  tMin: number;
}

export const TRAIN_BASE_PRESETS: Record<"tiny" | "ci", TrainBaseSettings> = {
  tiny: {
    model: TINY_CONFIG,
    steps: 1600,
    batchSize: 16,
    lr: 2e-3,
    warmupSteps: 60,
    minLrRatio: 0.05,
    weightDecay: 0.01,
    gradClip: 1.0,
    responseBudget: 64,
    tMin: DEFAULT_T_MIN,
  },
  ci: {
    model: CI_CONFIG,
    steps: 30,
    batchSize: 8,
    lr: 2e-3,
    warmupSteps: 5,
    minLrRatio: 0.1,
    weightDecay: 0.01,
    gradClip: 1.0,
    responseBudget: 64,
    tMin: DEFAULT_T_MIN,
  },
};

export interface TrainBaseArgs {
  preset: "tiny" | "ci";
  seed: number;
  out: string;
  data: string;
  tokenizer: string;
  /** Overrides the preset's step count (the cosine schedule spans it). */
  steps?: number;
  /** Wall-clock cap: stop early (and save) after this many minutes; makes the result speed-dependent. */
  minutes?: number;
  /** Evaluate greedy pass@1 (python3 check) on held-out rows after training. */
  evalLimit: number;
  /** Also evaluate every this many minutes during training (0 = never), on evalLimit/2 rows. */
  evalEveryMinutes: number;
  /** Where snapshots of the model are saved (step-N/ subfolders), every snapshotEveryMinutes. */
  snapshotDir?: string;
  snapshotEveryMinutes: number;
  /** Start from this model directory's weights (same config) instead of a fresh init. */
  init?: string;
  /** Overrides the preset's peak learning rate. */
  lr?: number;
  /** Stop (and save) after this many steps of the `steps`-long schedule; reproducible, unlike --minutes. */
  stopAfter?: number;
  /**
   * Train on a toy train split of this many rows generated in memory (same generator and seed as
   * datasets/toy, so its held-out splits stay held out) instead of DATA/train.jsonl.
   */
  trainSize?: number;
  /** Loss multiplier of number tokens (the copied constants); 1 = a flat loss. */
  numberWeight: number;
  /** Weight of a masked token's loss: 1/t (default) or CART (--loss-weight cart --cart-p P). */
  lossWeighting: LossWeighting;
  /** mdlm = masked-diffusion SFT on whole answers (default); dreamon = DreamOn variable-length infilling (train-base-dreamon.ts). */
  recipe?: "mdlm" | "dreamon";
  /** DreamOn's per-example weight: linear = (1 − t) (DreamOn), inv_t = 1/t (the base's). */
  dreamonTimeWeight?: "linear" | "inv_t";
  /** DreamOn: share of each batch's rows at the exact length (no EOS, no merges); 0 = none. */
  dreamonExactShare?: number;
  /** DreamOn: EOS padding after the middle is drawn from 0 … this − 1 (DreamOn's max_delete, 64). */
  dreamonMaxDelete?: number;
  /** DreamOn: share of rows whose merge count is uniform (train-base-infill.ts uniformCountShare); 0 = none. */
  dreamonUniformMerges?: number;
  /** DreamOn: where merges go (train-base-infill.ts mergePlacement): random (DreamOn) or tail. */
  dreamonMergePlacement?: MergePlacement;
  /**
   * DreamOn: the trunk's learning rate (every weight but the new vocabulary rows) as a multiple
   * of --lr; 1 = one LR for all, 0 = only the new rows train.
   */
  trunkLrScale?: number;
}

export const TRAIN_BASE_USAGE = `usage: rlmesh train-base [--config tiny|ci] [--seed S] [--steps N] [--minutes M] [--out DIR]
                         [--data DIR] [--tokenizer FILE] [--eval-limit N] [--eval-every-min M]
                         [--snapshot-dir DIR] [--snapshot-every-min M] [--init MODEL_DIR] [--lr LR] [--stop-after N]
                         [--train-size N] [--number-weight W] [--loss-weight inv_t|cart] [--cart-p P] [--recipe mdlm|dreamon] [--dreamon-weight linear|inv_t]
                         [--exact-share F] [--max-delete N] [--uniform-merges F] [--merge-placement random|tail] [--trunk-lr-scale S]
  Masked-diffusion SFT of the tiny coder on the toy train split (jax-js on CPU); writes
  DIR/model.onnx + DIR/manifest.json (+ tokenizer.json) atomically. Same seed + steps = same model.
  --loss-weight cart replaces the 1/t weight of a masked token by CART's context-adaptive weight
  (--cart-p, default ${DEFAULT_CART_P}); the masks drawn are the same.
  --recipe dreamon trains variable-length infilling (DreamOn: middle + EOS, <|expand|> merges) on
  infilling rows of the train split, from --init's weights with <|expand|> added to the vocabulary;
  --dreamon-weight linear (DreamOn's 1 − t, default) or inv_t (the base's 1/t); --exact-share F
  builds that share of rows at the exact length (no EOS padding, no merges; default 0);
  --max-delete N draws the EOS padding from 0 … N − 1 (default 64); --uniform-merges F draws
  that share of rows' merge count uniformly (default 0: per pair); --merge-placement tail squeezes
  each run of masks at its end (its last mask is the <|expand|>; default random, DreamOn's);
  --trunk-lr-scale S trains
  every weight but the <|expand|> row (and any row after it) at S × the LR (default 1).`;

export function parseTrainBaseArgs(argv: readonly string[]): TrainBaseArgs {
  const args: TrainBaseArgs = {
    preset: "tiny",
    seed: 1,
    out: "models/tiny-coder",
    data: "datasets/toy",
    tokenizer: "models/tiny-coder/tokenizer.json",
    evalLimit: 200,
    evalEveryMinutes: 0,
    snapshotEveryMinutes: 5,
    numberWeight: 1,
    lossWeighting: { kind: "inv_t" },
  };
  let lossWeight: string | undefined;
  let cartP: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`train-base: ${flag} needs a value\n${TRAIN_BASE_USAGE}`);
      return v;
    };
    const num = (min: number): number => {
      const raw = value();
      const n = Number(raw);
      if (!Number.isFinite(n) || n < min) throw new Error(`train-base: ${flag} must be a number ≥ ${min}, got "${raw}"`);
      return n;
    };
    const share = (): number => {
      const f = num(0);
      if (f > 1) throw new Error(`train-base: ${flag} must be in [0, 1], got ${f}`);
      return f;
    };
    switch (flag) {
      case "--config": {
        const v = value();
        if (v !== "tiny" && v !== "ci") throw new Error(`train-base: --config must be tiny or ci, got "${v}"`);
        args.preset = v;
        break;
      }
      case "--seed":
        args.seed = Math.floor(num(0));
        break;
      case "--steps":
        args.steps = Math.floor(num(1));
        break;
      case "--minutes":
        args.minutes = num(0.01);
        break;
      case "--out":
        args.out = value();
        break;
      case "--data":
        args.data = value();
        break;
      case "--tokenizer":
        args.tokenizer = value();
        break;
      case "--eval-limit":
        args.evalLimit = Math.floor(num(0));
        break;
      case "--snapshot-dir":
        args.snapshotDir = value();
        break;
      case "--stop-after":
        args.stopAfter = Math.floor(num(1));
        break;
      case "--lr":
        args.lr = num(1e-7);
        break;
      case "--init":
        args.init = value();
        break;
      case "--snapshot-every-min":
        args.snapshotEveryMinutes = num(0.01);
        break;
      case "--eval-every-min":
        args.evalEveryMinutes = num(0);
        break;
      case "--train-size":
        args.trainSize = Math.floor(num(1));
        break;
      case "--number-weight":
        args.numberWeight = num(0);
        break;
      case "--loss-weight":
        lossWeight = value();
        break;
      case "--cart-p": {
        const raw = value();
        cartP = Number(raw);
        if (raw.trim() === "" || Number.isNaN(cartP)) throw new Error(`train-base: --cart-p must be a number in (0, 1), got "${raw}"`);
        break;
      }
      case "--recipe": {
        const v = value();
        if (v !== "mdlm" && v !== "dreamon") throw new Error(`train-base: --recipe must be mdlm or dreamon, got "${v}"`);
        args.recipe = v;
        break;
      }
      case "--dreamon-weight": {
        const v = value();
        if (v !== "linear" && v !== "inv_t") throw new Error(`train-base: --dreamon-weight must be linear or inv_t, got "${v}"`);
        args.dreamonTimeWeight = v;
        break;
      }
      case "--exact-share":
        args.dreamonExactShare = share();
        break;
      case "--max-delete":
        args.dreamonMaxDelete = Math.floor(num(0));
        break;
      case "--uniform-merges":
        args.dreamonUniformMerges = share();
        break;
      case "--merge-placement": {
        const v = value();
        if (v !== "random" && v !== "tail") throw new Error(`train-base: --merge-placement must be random or tail, got "${v}"`);
        args.dreamonMergePlacement = v;
        break;
      }
      case "--trunk-lr-scale":
        args.trunkLrScale = share();
        break;
      case "-h":
      case "--help":
        throw new Error(TRAIN_BASE_USAGE);
      default:
        throw new Error(`train-base: unknown flag ${flag}\n${TRAIN_BASE_USAGE}`);
    }
  }
  try {
    args.lossWeighting = parseLossWeighting(lossWeight, cartP, { lossWeight: "--loss-weight", cartP: "--cart-p" });
  } catch (err) {
    throw new Error(`train-base: ${(err as Error).message}`);
  }
  if (args.recipe === "dreamon" && args.lossWeighting.kind === "cart")
    throw new Error("train-base: --loss-weight cart applies to the mdlm recipe; --recipe dreamon weighs its tokens by --dreamon-weight");
  if (args.recipe !== "dreamon") {
    const dreamonOnly = [
      ["--exact-share", args.dreamonExactShare],
      ["--max-delete", args.dreamonMaxDelete],
      ["--uniform-merges", args.dreamonUniformMerges],
      ["--merge-placement", args.dreamonMergePlacement],
      ["--trunk-lr-scale", args.trunkLrScale],
    ] as const;
    for (const [flag, v] of dreamonOnly) if (v !== undefined) throw new Error(`train-base: ${flag} applies to --recipe dreamon only`);
  }
  return args;
}
