/** Knobs of the GRPO objective, with Dream-Coder's values as defaults (shared/src/grpo-defaults.ts). */
import { GRPO_DEFAULTS, GRPO_LOSS_AGGREGATIONS } from "@rlmesh/shared/grpo-defaults";

/** Lower clip of the importance ratio: ratio >= 1 - ε_low. */
export const DEFAULT_CLIP_EPS_LOW = GRPO_DEFAULTS.clipLow;
/** Upper clip ("clip-higher", DAPO): ratio <= 1 + ε_high. */
export const DEFAULT_CLIP_EPS_HIGH = GRPO_DEFAULTS.clipHigh;
/** Added to the group std so a near-constant group does not blow advantages up. */
export const DEFAULT_ADVANTAGE_EPS = 1e-6;
/** Mask ratio t of the coupled sampler is drawn from U(T_MIN, T_MAX). */
export const DEFAULT_MASK_T_MIN = GRPO_DEFAULTS.tMin;
export const DEFAULT_MASK_T_MAX = GRPO_DEFAULTS.tMax;
/** |A| at or below this counts as "zero advantage" for informative substitution. */
export const DEFAULT_ZERO_ADVANTAGE_TOL = 1e-8;

/**
 * How per-token losses become one scalar.
 * - `token-mean`: sum over all response tokens of the batch / their count (DAPO; default).
 * - `seq-mean-token-sum`: per sequence the sum over its tokens, then the mean over sequences.
 * - `seq-mean-token-mean`: per sequence the mean over its tokens, then the mean over sequences
 *   (original GRPO).
 */
export type LossAggregation = (typeof GRPO_LOSS_AGGREGATIONS)[number];

/**
 * Where the coupled-mask weights 1/t and 1/(1−t) go.
 * - `ratio`: inside the importance ratio, ratio = exp(w·(log p_new − log p_old)), as
 *   Dream-Coder / DiffuCoder's coupled-GRPO do (the weighted log-likelihood is the "log-prob").
 * - `loss`: the ratio uses raw log-probs; the per-token loss is multiplied by w/2, so the
 *   expected weight of a token over one mask pair is exactly 1 (same scale as plain GRPO).
 */
export type MaskWeightPlacement = "ratio" | "loss";

export interface GrpoLossConfig {
  /** @defaultValue DEFAULT_CLIP_EPS_LOW */
  clipEpsLow: number;
  /** @defaultValue DEFAULT_CLIP_EPS_HIGH */
  clipEpsHigh: number;
  /**
   * Dual-clip constant c (> 1) bounding the loss of negative-advantage tokens at −c·A;
   * null disables it. @defaultValue null
   */
  dualClipC: number | null;
  /** @defaultValue "token-mean" */
  aggregation: LossAggregation;
  /** @defaultValue "ratio" */
  maskWeightPlacement: MaskWeightPlacement;
  /** KL(π‖π_ref) penalty (k3 estimator); needs reference log-probs when > 0. @defaultValue 0 */
  klCoef: number;
  /** Entropy bonus; needs per-token entropies when > 0. @defaultValue 0 */
  entropyCoef: number;
}

export const DEFAULT_GRPO_LOSS_CONFIG: Readonly<GrpoLossConfig> = Object.freeze({
  clipEpsLow: DEFAULT_CLIP_EPS_LOW,
  clipEpsHigh: DEFAULT_CLIP_EPS_HIGH,
  dualClipC: null,
  aggregation: "token-mean",
  maskWeightPlacement: "ratio",
  klCoef: 0,
  entropyCoef: 0,
});

/** Thrown when a GRPO option or input is out of range or inconsistent. */
export class GrpoConfigError extends Error {
  override name = "GrpoConfigError";
}

export function validateGrpoLossConfig(cfg: GrpoLossConfig): GrpoLossConfig {
  if (!(cfg.clipEpsLow >= 0 && cfg.clipEpsLow < 1)) throw new GrpoConfigError(`clipEpsLow must be in [0, 1), got ${cfg.clipEpsLow}`);
  if (!(cfg.clipEpsHigh >= 0)) throw new GrpoConfigError(`clipEpsHigh must be >= 0, got ${cfg.clipEpsHigh}`);
  if (cfg.dualClipC !== null && !(cfg.dualClipC > 1)) throw new GrpoConfigError(`dualClipC must be > 1 or null, got ${cfg.dualClipC}`);
  if (!(cfg.klCoef >= 0)) throw new GrpoConfigError(`klCoef must be >= 0, got ${cfg.klCoef}`);
  if (!(cfg.entropyCoef >= 0)) throw new GrpoConfigError(`entropyCoef must be >= 0, got ${cfg.entropyCoef}`);
  return cfg;
}
