import { InvalidArgumentError, type GrpoParams } from "@rlmesh/shared";
import { GRPO_DEFAULTS, type GrpoDefaults } from "@rlmesh/shared/grpo-defaults";
import { checkGrpoParams } from "@rlmesh/shared/grpo-params-check";
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
  emaDecay: GRPO_DEFAULTS.emaDecay,
});

/**
 * The learner's recipe: the shared GRPO defaults' fields, with substitution and the loss weighting
 * in the learner's own terms (on/off rather than disable; a parsed weighting rather than its name).
 */
export type LearnerRecipe = Omit<GrpoDefaults, "disableSubstitution" | "lossWeight"> & {
  substitution: boolean;
  lossWeighting: LossWeighting;
};

/** Everything one TrainStep's update needs, resolved from GrpoParams and the recipe. */
export interface ResolvedGrpoParams {
  update: GrpoUpdateConfig;
  schedule: LrScheduleConfig;
  substitute: boolean;
  advantage: GroupAdvantageOptions;
  /** Decay of the weights' moving average (0: none kept). */
  emaDecay: number;
}

/**
 * GrpoParams (every field optional) over `recipe`. Throws InvalidArgumentError naming
 * `params.<field>` for a value out of range or an option the learner does not implement; the rule
 * is shared `checkGrpoParams`, which the api also applies to a job's `spec.grpo` at submit.
 */
export function resolveGrpoParams(p: GrpoParams | null | undefined, recipe: LearnerRecipe = LEARNER_RECIPE): ResolvedGrpoParams {
  const q = p ?? {};
  checkGrpoParams(q, "params", { tMin: recipe.tMin, tMax: recipe.tMax, lossWeight: recipe.lossWeighting.kind });
  const or = <T>(v: T | null | undefined, dflt: T): T => (v === undefined || v === null ? dflt : v);
  const lr = or(q.lr, recipe.lr);
  const clipLow = or(q.clipLow, recipe.clipLow);
  const clipHigh = or(q.clipHigh, recipe.clipHigh);
  const dualClip = or(q.dualClip, recipe.dualClip);
  const adv = or(q.advEstimator, recipe.advEstimator);
  const agg = or(q.lossAgg, recipe.lossAgg) as LossAggregation;
  const maskEpochs = or(q.maskEpochs, recipe.maskEpochs);
  const ppoEpochs = or(q.ppoEpochs, recipe.ppoEpochs);
  const tMin = or(q.tMin, recipe.tMin);
  const tMax = or(q.tMax, recipe.tMax);
  const maxGradNorm = or(q.maxGradNorm, recipe.maxGradNorm);
  const warmupSteps = or(q.warmupSteps, recipe.warmupSteps);
  const weightDecay = or(q.weightDecay, recipe.weightDecay);
  const substitute = q.disableSubstitution === undefined || q.disableSubstitution === null ? recipe.substitution : !q.disableSubstitution;
  const weightInRatio = q.weightInRatio ?? recipe.weightInRatio;
  let weighting: LossWeighting;
  try {
    // Messages start with the field name; InvalidArgumentError adds "params.<field>: ".
    weighting = parseLossWeighting(q.lossWeight, q.cartP, { lossWeight: "", cartP: "" }, recipe.lossWeighting);
  } catch (err) {
    if (!(err instanceof LossWeightError) || err.field === "input") throw err;
    throw new InvalidArgumentError(`params.${err.field}`, err.message.trimStart());
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
    emaDecay: or(q.emaDecay, recipe.emaDecay),
  };
}
