// The GRPO defaults of a job, named once: what an unset `JobSpec.grpo` / `TrainStepRequest.params`
// field means. The learner's recipe (services/learner/src/trainer/learner-recipe.ts) is made of
// them, its loss knobs (grpo/grpo-config.ts) default to them, and the api publishes them as its
// spec defaults (services/api/src/job-spec.ts DEFAULT_GRPO).

/** Group advantage estimators: grpo (mean and std of the group) or drgrpo (mean only). */
export const GRPO_ADV_ESTIMATORS = ["grpo", "drgrpo"] as const;
/** Loss aggregations (services/learner/src/grpo/grpo-config.ts LossAggregation). */
export const GRPO_LOSS_AGGREGATIONS = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] as const;
/** Masked-token loss weights: 1/t of the coupled masks, or CART's context-adaptive weight. */
export const GRPO_LOSS_WEIGHTS = ["inv_t", "cart"] as const;

/** Every GrpoParams field but cart_p (which only means something with loss_weight cart), set. */
export interface GrpoDefaults {
  lr: number;
  warmupSteps: number;
  clipLow: number;
  clipHigh: number;
  dualClip: number;
  advEstimator: (typeof GRPO_ADV_ESTIMATORS)[number];
  lossAgg: (typeof GRPO_LOSS_AGGREGATIONS)[number];
  maskEpochs: number;
  ppoEpochs: number;
  tMin: number;
  tMax: number;
  klCoef: number;
  entropyCoef: number;
  maxGradNorm: number;
  weightDecay: number;
  disableSubstitution: boolean;
  weightInRatio: boolean;
  lossWeight: "inv_t";
  emaDecay: number;
}

/**
 * The shipped tiny model's GRPO recipe. Measured outside the repo (ARCHITECTURE.md): LR 1e-4 flat
 * did not move held-out pass@1, 2e-4 degraded, 5e-4 collapsed, with the 1/t weights inside the
 * ratio and no warmup — hence warmup, weights in the loss (not the ratio), and LR 1e-4 until
 * issue 9's measurements say otherwise.
 */
export const GRPO_DEFAULTS: Readonly<GrpoDefaults> = Object.freeze({
  lr: 1e-4,
  /** Linear warmup over the first optimizer steps (Adam's first steps are violent otherwise). */
  warmupSteps: 10,
  /** Dream-Coder / DAPO clip-higher: ratio in [1 − clip_low, 1 + clip_high]. */
  clipLow: 0.2,
  clipHigh: 0.28,
  /** 0 = no dual clip. */
  dualClip: 0,
  advEstimator: "grpo",
  lossAgg: "token-mean",
  maskEpochs: 1,
  ppoEpochs: 1,
  /** The coupled masks' ratio t is drawn from U(t_min, t_max). */
  tMin: 0.2,
  tMax: 0.8,
  klCoef: 0,
  entropyCoef: 0,
  maxGradNorm: 1.0,
  /** No decay: an RL run is short and decay would only pull the base model's weights to zero. */
  weightDecay: 0,
  /** Intra-batch informative substitution on. */
  disableSubstitution: false,
  /** 1/t weights only in the loss weighting (expected weight 1 per token), not in the ratio. */
  weightInRatio: false,
  /** Masked-token weight: 1/t of the coupled masks (`loss_weight: "cart"` switches to CART). */
  lossWeight: "inv_t",
  /** No moving average of the weights: a job's final weights are its last update's. */
  emaDecay: 0,
});

/** Learning-rate decays a job can ask for (`spec.lr_schedule.decay`; the api applies them per step). */
export const LR_DECAYS = ["constant", "cosine"] as const;
/** Fraction of the run at which the decay begins when `lr_schedule.decay_start` is unset. */
export const DEFAULT_LR_DECAY_START = 0.5;
/** The LR floor, as a fraction of grpo.lr, when `lr_schedule.min_ratio` is unset. */
export const DEFAULT_LR_MIN_RATIO = 0.1;
