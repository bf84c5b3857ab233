// The one rule for what a GrpoParams value may be. The api checks a job's `spec.grpo` with it at
// SubmitJob and the learner checks a TrainStep's `params` with it, so a job the api accepts never
// fails at its first training step on a value the learner refuses.
import { InvalidArgumentError } from "./grpc/errors.js";
import { GRPO_ADV_ESTIMATORS, GRPO_DEFAULTS, GRPO_LOSS_AGGREGATIONS, GRPO_LOSS_WEIGHTS } from "./grpo-defaults.js";
import type { GrpoParams } from "./types.js";

/** The most coupled-mask or PPO epochs one TrainStep may run. */
export const GRPO_MAX_EPOCHS = 16;

/** The defaults a value is checked against when a related field is unset. */
export interface GrpoCheckDefaults {
  tMin: number;
  tMax: number;
  lossWeight: (typeof GRPO_LOSS_WEIGHTS)[number];
}

type Params = Partial<{ [K in keyof GrpoParams]: GrpoParams[K] | null }>;

const set = <T>(v: T | null | undefined): v is T => v !== undefined && v !== null;

/**
 * Checks every set field of `p`; unset fields are left to the defaults. Throws
 * InvalidArgumentError naming `<prefix>.<field>` (e.g. `spec.grpo.mask_epochs`).
 */
export function checkGrpoParams(
  p: Params | null | undefined,
  prefix: string,
  defaults: GrpoCheckDefaults = { tMin: GRPO_DEFAULTS.tMin, tMax: GRPO_DEFAULTS.tMax, lossWeight: GRPO_DEFAULTS.lossWeight },
): void {
  const q = p ?? {};
  const bad = (field: string, message: string): never => {
    throw new InvalidArgumentError(`${prefix}.${field}`, message);
  };
  const num = (v: number | null | undefined, field: string, ok: (x: number) => boolean, what: string) => {
    if (set(v) && (typeof v !== "number" || !Number.isFinite(v) || !ok(v))) bad(field, `must be ${what}, got ${v}`);
  };
  const int = (v: number | null | undefined, field: string, min: number, max: number) =>
    num(v, field, (x) => Number.isInteger(x) && x >= min && x <= max, `an integer in [${min}, ${max}]`);
  const oneOf = (v: string | null | undefined, field: string, allowed: readonly string[], what: string) => {
    if (set(v) && !allowed.includes(v)) bad(field, `must be ${what}, got "${v}"`);
  };

  num(q.lr, "lr", (x) => x >= 0 && x < 1, "in [0, 1)");
  num(q.clipLow, "clip_low", (x) => x >= 0 && x < 1, "in [0, 1)");
  num(q.clipHigh, "clip_high", (x) => x >= 0 && x <= 10, "in [0, 10]");
  num(q.dualClip, "dual_clip", (x) => x === 0 || x > 1, "0 (off) or > 1");
  oneOf(q.advEstimator, "adv_estimator", GRPO_ADV_ESTIMATORS, GRPO_ADV_ESTIMATORS.join(" or "));
  oneOf(q.lossAgg, "loss_agg", GRPO_LOSS_AGGREGATIONS, `one of ${GRPO_LOSS_AGGREGATIONS.join(", ")}`);
  int(q.maskEpochs, "mask_epochs", 1, GRPO_MAX_EPOCHS);
  int(q.ppoEpochs, "ppo_epochs", 1, GRPO_MAX_EPOCHS);
  num(q.tMin, "t_min", (x) => x > 0 && x < 1, "in (0, 1)");
  const tMin = set(q.tMin) ? q.tMin : defaults.tMin;
  num(q.tMax, "t_max", (x) => x >= tMin && x < 1, `in [t_min=${tMin}, 1)`);
  // A t_min alone must still leave the (default) t_max at or above it: U(t_min, t_max) is drawn.
  if (set(q.tMin) && !set(q.tMax) && q.tMin > defaults.tMax) bad("t_min", `must be <= t_max (${defaults.tMax}, the default), got ${q.tMin}`);
  // The stacked-pass loss has no reference policy or entropies; refuse rather than ignore.
  num(q.klCoef, "kl_coef", (x) => x === 0, "0 (the learner has no reference-policy KL term)");
  num(q.entropyCoef, "entropy_coef", (x) => x === 0, "0 (the learner has no entropy term)");
  num(q.maxGradNorm, "max_grad_norm", (x) => x > 0, "> 0");
  int(q.warmupSteps, "warmup_steps", 0, 1_000_000);
  num(q.weightDecay, "weight_decay", (x) => x >= 0 && x < 1, "in [0, 1)");
  num(q.emaDecay, "ema_decay", (x) => x >= 0 && x < 1, "in [0, 1) (0: no moving average)");
  oneOf(q.lossWeight || undefined, "loss_weight", GRPO_LOSS_WEIGHTS, `one of ${GRPO_LOSS_WEIGHTS.join(", ")}`);
  const kind = q.lossWeight || defaults.lossWeight;
  if (set(q.cartP)) {
    if (kind !== "cart") bad("cart_p", `applies only to loss_weight cart (loss weight here: ${kind}), got ${q.cartP}`);
    num(q.cartP, "cart_p", (x) => x > 0 && x < 1, "in (0, 1)");
  }
}
