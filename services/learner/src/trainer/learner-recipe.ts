import { InvalidArgumentError, type GrpoParams } from "@rlmesh/shared";
import { GRPO_DEFAULTS, GRPO_LOSS_AGGREGATIONS } from "@rlmesh/shared/grpo-defaults";
import { LossWeightError, parseLossWeighting, type LossWeighting } from "../grpo/cart-weights.js";
import type { GroupAdvantageOptions } from "../grpo/group-advantages.js";
import type { LossAggregation } from "../grpo/grpo-config.js";
import type { GrpoUpdateConfig } from "../grpo/grpo-update.js";
import { DEFAULT_ADAM_BETA1, DEFAULT_ADAM_BETA2, DEFAULT_ADAM_EPS } from "../optim/adamw.js";
import type { LrScheduleConfig } from "../optim/lr-schedule.js";

/**
 * The learner's GRPO defaults for the shipped tiny model: what an unset GrpoParams field means.
 * The values are shared/src/grpo-defaults.ts GRPO_DEFAULTS (also the api's spec defaults; the
 * reasons for each are there), in the learner's terms.
 */
export const LEARNER_RECIPE: Readonly<LearnerRecipe> = Object.freeze({
  lr: GRPO_DEFAULTS.lr,
  warmupSteps: GRPO_DEFAULTS.warmupSteps,
  clipLow: GRPO_DEFAULTS.clipLow,
  clipHigh: GRPO_DEFAULTS.clipHigh,
  dualClip: GRPO_DEFAULTS.dualClip,
  advEstimator: GRPO_DEFAULTS.advEstimator,
  lossAgg: GRPO_DEFAULTS.lossAgg,
  maskEpochs: GRPO_DEFAULTS.maskEpochs,
  ppoEpochs: GRPO_DEFAULTS.ppoEpochs,
  tMin: GRPO_DEFAULTS.tMin,
  tMax: GRPO_DEFAULTS.tMax,
  klCoef: GRPO_DEFAULTS.klCoef,
  entropyCoef: GRPO_DEFAULTS.entropyCoef,
  maxGradNorm: GRPO_DEFAULTS.maxGradNorm,
  weightDecay: GRPO_DEFAULTS.weightDecay,
  substitution: !GRPO_DEFAULTS.disableSubstitution,
  weightInRatio: GRPO_DEFAULTS.weightInRatio,
  lossWeighting: Object.freeze({ kind: GRPO_DEFAULTS.lossWeight }),
});

export interface LearnerRecipe {
  lr: number;
  warmupSteps: number;
  clipLow: number;
  clipHigh: number;
  dualClip: number;
  advEstimator: "grpo" | "drgrpo";
  lossAgg: LossAggregation;
  maskEpochs: number;
  ppoEpochs: number;
  tMin: number;
  tMax: number;
  klCoef: number;
  entropyCoef: number;
  maxGradNorm: number;
  weightDecay: number;
  substitution: boolean;
  weightInRatio: boolean;
  lossWeighting: LossWeighting;
}

/** Everything one TrainStep's update needs, resolved from GrpoParams and the recipe. */
export interface ResolvedGrpoParams {
  update: GrpoUpdateConfig;
  schedule: LrScheduleConfig;
  substitute: boolean;
  advantage: GroupAdvantageOptions;
}

const AGGREGATIONS: readonly LossAggregation[] = GRPO_LOSS_AGGREGATIONS;
const MAX_EPOCHS = 16;

function bad(field: string, message: string): never {
  throw new InvalidArgumentError(`params.${field}`, message);
}

function num(v: number | null | undefined, dflt: number, field: string, ok: (x: number) => boolean, what: string): number {
  if (v === undefined || v === null) return dflt;
  if (!Number.isFinite(v) || !ok(v)) bad(field, `must be ${what}, got ${v}`);
  return v;
}

function int(v: number | null | undefined, dflt: number, field: string, min: number, max: number): number {
  return num(v, dflt, field, (x) => Number.isInteger(x) && x >= min && x <= max, `an integer in [${min}, ${max}]`);
}

/**
 * GrpoParams (every field optional) over `recipe`. Throws InvalidArgumentError naming
 * `params.<field>` for a value out of range or an option the learner does not implement.
 */
export function resolveGrpoParams(p: GrpoParams | null | undefined, recipe: LearnerRecipe = LEARNER_RECIPE): ResolvedGrpoParams {
  const q = p ?? {};
  const lr = num(q.lr, recipe.lr, "lr", (x) => x >= 0 && x < 1, "in [0, 1)");
  const clipLow = num(q.clipLow, recipe.clipLow, "clip_low", (x) => x >= 0 && x < 1, "in [0, 1)");
  const clipHigh = num(q.clipHigh, recipe.clipHigh, "clip_high", (x) => x >= 0 && x <= 10, "in [0, 10]");
  const dualClip = num(q.dualClip, recipe.dualClip, "dual_clip", (x) => x === 0 || x > 1, "0 (off) or > 1");
  const adv = q.advEstimator ?? recipe.advEstimator;
  if (adv !== "grpo" && adv !== "drgrpo") bad("adv_estimator", `must be grpo or drgrpo, got "${adv}"`);
  const agg = (q.lossAgg ?? recipe.lossAgg) as LossAggregation;
  if (!AGGREGATIONS.includes(agg)) bad("loss_agg", `must be one of ${AGGREGATIONS.join(", ")}, got "${agg}"`);
  const maskEpochs = int(q.maskEpochs, recipe.maskEpochs, "mask_epochs", 1, MAX_EPOCHS);
  const ppoEpochs = int(q.ppoEpochs, recipe.ppoEpochs, "ppo_epochs", 1, MAX_EPOCHS);
  const tMin = num(q.tMin, recipe.tMin, "t_min", (x) => x > 0 && x < 1, "in (0, 1)");
  const tMax = num(q.tMax, recipe.tMax, "t_max", (x) => x >= tMin && x < 1, `in [t_min=${tMin}, 1)`);
  // The stacked-pass loss has no reference policy or entropies; refuse rather than ignore.
  num(q.klCoef, recipe.klCoef, "kl_coef", (x) => x === 0, "0 (the learner has no reference-policy KL term)");
  num(q.entropyCoef, recipe.entropyCoef, "entropy_coef", (x) => x === 0, "0 (the learner has no entropy term)");
  const maxGradNorm = num(q.maxGradNorm, recipe.maxGradNorm, "max_grad_norm", (x) => x > 0, "> 0");
  const warmupSteps = int(q.warmupSteps, recipe.warmupSteps, "warmup_steps", 0, 1_000_000);
  const weightDecay = num(q.weightDecay, recipe.weightDecay, "weight_decay", (x) => x >= 0 && x < 1, "in [0, 1)");
  const substitute = q.disableSubstitution === undefined || q.disableSubstitution === null ? recipe.substitution : !q.disableSubstitution;
  const weightInRatio = q.weightInRatio ?? recipe.weightInRatio;
  let weighting: LossWeighting;
  try {
    // Messages start with the field name; InvalidArgumentError adds "params.<field>: ".
    weighting = parseLossWeighting(q.lossWeight, q.cartP, { lossWeight: "", cartP: "" }, recipe.lossWeighting);
  } catch (err) {
    if (!(err instanceof LossWeightError) || err.field === "input") throw err;
    bad(err.field, err.message.trimStart());
  }
  return {
    update: {
      loss: {
        clipEpsLow: clipLow,
        clipEpsHigh: clipHigh,
        dualClipC: dualClip === 0 ? null : dualClip,
        aggregation: agg,
        maskWeightPlacement: weightInRatio ? "ratio" : "loss",
        klCoef: 0,
        entropyCoef: 0,
      },
      maskEpochs,
      ppoEpochs,
      maskPairSchedule: "all",
      mask: { tMin, tMax, weighting },
      maxGradNorm,
      adamw: { beta1: DEFAULT_ADAM_BETA1, beta2: DEFAULT_ADAM_BETA2, eps: DEFAULT_ADAM_EPS, weightDecay },
    },
    schedule: { baseLr: lr, warmupSteps, decay: "constant", minLrRatio: 1 },
    substitute,
    advantage: { scaleByStd: adv === "grpo" },
  };
}
