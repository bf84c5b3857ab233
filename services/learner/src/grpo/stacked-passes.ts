import { maskedInputIds, maskPairCoefficients, type MaskPair } from "./coupled-masks.js";
import { GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";
import { aggregationFactors } from "./loss-aggregation.js";
import type { GrpoBatch } from "./grpo-batch.js";

/**
 * All passes of all mask pairs stacked along the batch axis, so one forward of the policy over
 * N = pairs × 2 × B rows yields every log-prob the GRPO loss needs. Row (p, k, b) is sample b
 * with pass k of pair p masked. Each response token is masked in exactly one pass of a pair, so
 * the loss is a plain sum over rows and positions — the same number as the per-pair formula in
 * grpo-loss-inputs.ts (tested).
 */

/** A batch of full sequences for the policy (the shape JaxPolicy takes), row-major [N, T]. */
export interface PolicyTokenBatch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  positionIds: Int32Array;
  /** 1 = real key, 0 = padding. */
  attentionMask: Float32Array;
  /** Token whose log-prob is read at each position (the clean sampled token). */
  targets: Int32Array;
  /** 1 where a log-prob is read (coef ≠ 0); a policy may return 0 elsewhere (JaxPolicy split mode). */
  readMask?: Uint8Array;
}

export interface StackedPasses {
  /** The policy input: N = pairs·2·B rows. */
  tokens: PolicyTokenBatch;
  pairs: MaskPair[];
  /** Per position: coefficient of log p in the log-ratio (0 where the row's pass does not mask it). */
  coef: Float32Array;
  /** Per position: token weight × aggregation factor / #pairs (0 where not scored). */
  factor: Float32Array;
  /** Per position: the advantage of the row's sample. */
  adv: Float32Array;
}

/** Extra [N, T] inputs of the stacked loss; keys are fixed per config so a jitted loss is reused. */
export type GrpoLossExtras = Record<string, Float32Array>;

export function stackMaskPasses(batch: GrpoBatch, pairs: MaskPair[], maskId: number, cfg: GrpoLossConfig): StackedPasses {
  const { batchSize: B, seqLen: T } = batch;
  if (pairs.length === 0) throw new GrpoConfigError("at least one mask pair is needed");
  if (batch.advantages.length !== B) throw new GrpoConfigError(`advantages has ${batch.advantages.length} entries, expected ${B}`);
  const N = pairs.length * 2 * B;
  const agg = aggregationFactors(batch.responseMask, B, T, cfg.aggregation);
  const inputIds = new Int32Array(N * T);
  const positionIds = new Int32Array(N * T);
  const attentionMask = new Float32Array(N * T);
  const targets = new Int32Array(N * T);
  const coef = new Float32Array(N * T);
  const factor = new Float32Array(N * T);
  const adv = new Float32Array(N * T);
  const readMask = new Uint8Array(N * T);
  let row = 0;
  for (const pair of pairs) {
    if (pair.batchSize !== B || pair.seqLen !== T)
      throw new GrpoConfigError(`mask pair is ${pair.batchSize}x${pair.seqLen}, expected ${B}x${T}`);
    const c = maskPairCoefficients(pair, cfg.maskWeightPlacement, cfg.aggregation);
    for (const k of [0, 1] as const) {
      const ids = maskedInputIds(batch.tokens, pair.masks[k], maskId);
      for (let b = 0; b < B; b++, row++) {
        const src = b * T;
        const dst = row * T;
        inputIds.set(ids.subarray(src, src + T), dst);
        targets.set(batch.tokens.subarray(src, src + T), dst);
        for (let j = 0; j < T; j++) {
          positionIds[dst + j] = j;
          attentionMask[dst + j] = batch.attentionMask[src + j]!;
          adv[dst + j] = batch.advantages[b]!;
          if (!pair.masks[k][src + j]) continue;
          coef[dst + j] = c.logRatioCoef[k][src + j]!;
          readMask[dst + j] = coef[dst + j] ? 1 : 0;
          factor[dst + j] = (c.tokenWeight[src + j]! * agg[src + j]!) / pairs.length;
        }
      }
    }
  }
  return { tokens: { batchSize: N, seqLen: T, inputIds, positionIds, attentionMask, targets, readMask }, pairs, coef, factor, adv };
}

/**
 * The [N, T] inputs of `grpoLogProbLoss` given old-policy log-probs of the stacked rows (and
 * reference-policy ones when klCoef > 0). Unscored positions get 0 so they never matter.
 */
export function grpoLossExtras(
  stacked: StackedPasses,
  oldLogProbs: Float32Array,
  cfg: GrpoLossConfig,
  refLogProbs?: Float32Array,
): GrpoLossExtras {
  const n = stacked.coef.length;
  if (oldLogProbs.length !== n) throw new GrpoConfigError(`oldLogProbs has ${oldLogProbs.length} values, expected ${n}`);
  if (cfg.klCoef > 0 && refLogProbs?.length !== n) throw new GrpoConfigError("klCoef > 0 needs reference log-probs of the stacked rows");
  if (cfg.entropyCoef > 0)
    throw new GrpoConfigError("entropyCoef > 0 is not supported on stacked passes (the policy gives log-probs only)");
  const oldTerm = new Float32Array(n);
  for (let i = 0; i < n; i++) if (stacked.coef[i]) oldTerm[i] = stacked.coef[i]! * oldLogProbs[i]!;
  const extras: GrpoLossExtras = { coef: stacked.coef, oldTerm, adv: stacked.adv, factor: stacked.factor };
  if (cfg.dualClipC !== null) {
    const bound = new Float32Array(n);
    for (let i = 0; i < n; i++) bound[i] = stacked.adv[i]! < 0 ? -stacked.adv[i]! * cfg.dualClipC : NO_DUAL_BOUND;
    extras["dualBound"] = bound;
  }
  if (cfg.klCoef > 0) {
    const refTerm = new Float32Array(n);
    for (let i = 0; i < n; i++) if (stacked.coef[i]) refTerm[i] = stacked.coef[i]! * refLogProbs![i]!;
    extras["refTerm"] = refTerm;
  }
  return extras;
}

/** Stands in for +∞ in the dual-clip bound of tokens with A ≥ 0 (keeps the min's gradient finite). */
export const NO_DUAL_BOUND = 3.0e38;
