import { aggregationFactors } from "./loss-aggregation.js";
import { maskPairCoefficients, type MaskPair } from "./coupled-masks.js";
import { GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";

/**
 * Everything the GRPO loss needs besides the new policy's log-probs, as dense float32 [B, T]
 * arrays, so the reference (plain arrays) and the jax-js implementation compute the very same
 * formula from the same numbers.
 *
 * For mask pair p and token j:
 *   ℓ_new[j]   = Σ_k coef_k[j]·logp_new,k[j]             (k = the pair's two passes)
 *   logRatio[j] = ℓ_new[j] − oldTerm[j],  oldTerm = Σ_k coef_k·logp_old,k
 *   L[j]        = tokenWeight[j]·( pg(logRatio[j], A) + klCoef·k3(refTerm − ℓ_new) − entCoef·H[j] )
 *   loss        = Σ_p Σ_j aggFactor[j]·L_p[j]            (aggFactor includes 1/#pairs)
 */
export interface PreparedPair {
  pair: MaskPair;
  logRatioCoef: [Float32Array, Float32Array];
  tokenWeight: Float32Array;
  oldTerm: Float32Array;
  /** Σ_k coef_k·logp_ref,k; present when klCoef > 0. */
  refTerm: Float32Array | null;
}

export interface PreparedGrpoLoss {
  batchSize: number;
  seqLen: number;
  /** Advantage of each token's sample, [B, T]. */
  tokenAdvantage: Float32Array;
  /** 1 on response tokens. */
  valid: Uint8Array;
  /** Aggregation factor per token, already divided by the number of mask pairs. */
  aggFactor: Float32Array;
  pairs: PreparedPair[];
}

/** Log-probs of the two passes of one mask pair, each dense [B, T]. */
export type PassLogProbs = [Float32Array, Float32Array];

export interface GrpoLossInputs {
  batchSize: number;
  seqLen: number;
  /** 1 on response tokens the loss covers, [B, T]. */
  responseMask: ArrayLike<number>;
  /** One advantage per sample, [B]. */
  advantages: ArrayLike<number>;
  pairs: MaskPair[];
  /** Old-policy log-probs per pair, computed once before the first update with the same masks. */
  oldLogProbs: PassLogProbs[];
  /** Reference-policy log-probs per pair (only when klCoef > 0). */
  refLogProbs?: PassLogProbs[];
}

export function prepareGrpoLoss(inputs: GrpoLossInputs, cfg: GrpoLossConfig): PreparedGrpoLoss {
  const { batchSize: B, seqLen: T } = inputs;
  const n = B * T;
  if (inputs.responseMask.length !== n) throw new GrpoConfigError(`responseMask has ${inputs.responseMask.length} entries, expected ${n}`);
  if (inputs.advantages.length !== B) throw new GrpoConfigError(`advantages has ${inputs.advantages.length} entries, expected ${B}`);
  if (inputs.pairs.length === 0) throw new GrpoConfigError("at least one mask pair is needed");
  if (inputs.oldLogProbs.length !== inputs.pairs.length)
    throw new GrpoConfigError(`oldLogProbs for ${inputs.oldLogProbs.length} pairs, expected ${inputs.pairs.length}`);
  if (cfg.klCoef > 0 && inputs.refLogProbs?.length !== inputs.pairs.length)
    throw new GrpoConfigError("klCoef > 0 needs refLogProbs for every mask pair");
  const valid = new Uint8Array(n);
  for (let i = 0; i < n; i++) valid[i] = inputs.responseMask[i] ? 1 : 0;
  const tokenAdvantage = new Float32Array(n);
  for (let b = 0; b < B; b++) tokenAdvantage.fill(inputs.advantages[b]!, b * T, (b + 1) * T);
  const aggFactor = aggregationFactors(valid, B, T, cfg.aggregation);
  for (let i = 0; i < n; i++) aggFactor[i] = aggFactor[i]! / inputs.pairs.length;
  const combine = (coef: [Float32Array, Float32Array], lp: PassLogProbs): Float32Array => {
    if (lp[0].length !== n || lp[1].length !== n) throw new GrpoConfigError(`log-prob arrays must have ${n} entries`);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // Only masked positions carry a coefficient; skipping the rest keeps a −Inf or NaN that
      // the model may emit at unmasked positions out of the sum.
      let s = 0;
      if (coef[0][i]) s += coef[0][i]! * lp[0][i]!;
      if (coef[1][i]) s += coef[1][i]! * lp[1][i]!;
      out[i] = s;
    }
    return out;
  };
  const pairs = inputs.pairs.map((pair, p): PreparedPair => {
    if (pair.batchSize !== B || pair.seqLen !== T)
      throw new GrpoConfigError(`mask pair ${p} is ${pair.batchSize}x${pair.seqLen}, expected ${B}x${T}`);
    const { logRatioCoef, tokenWeight } = maskPairCoefficients(pair, cfg.maskWeightPlacement, cfg.aggregation);
    return {
      pair,
      logRatioCoef,
      tokenWeight,
      oldTerm: combine(logRatioCoef, inputs.oldLogProbs[p]!),
      refTerm: cfg.klCoef > 0 ? combine(logRatioCoef, inputs.refLogProbs![p]!) : null,
    };
  });
  return { batchSize: B, seqLen: T, tokenAdvantage, valid, aggFactor, pairs };
}
