import { clippedSurrogateToken, k3Kl } from "./clipped-surrogate.js";
import { GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";
import type { PassLogProbs, PreparedGrpoLoss } from "./grpo-loss-inputs.js";
import { surrogateStats, type GrpoLossStats } from "./grpo-loss-stats.js";
import type { GrpoLossExtras } from "./stacked-passes.js";

/**
 * The GRPO loss on plain arrays (float64 arithmetic), per mask pair: the readable specification
 * the stacked and jax-js forms are tested against.
 */
export function grpoLossReference(
  prep: PreparedGrpoLoss,
  newLogProbs: PassLogProbs[],
  cfg: GrpoLossConfig,
  entropies?: PassLogProbs[],
): { loss: number; logRatios: Float64Array[]; stats: GrpoLossStats } {
  if (newLogProbs.length !== prep.pairs.length)
    throw new GrpoConfigError(`newLogProbs for ${newLogProbs.length} pairs, expected ${prep.pairs.length}`);
  if (cfg.entropyCoef > 0 && entropies?.length !== prep.pairs.length)
    throw new GrpoConfigError("entropyCoef > 0 needs per-pass entropies for every mask pair");
  const n = prep.batchSize * prep.seqLen;
  let loss = 0;
  const logRatios = prep.pairs.map((pp, p) => {
    const lp = newLogProbs[p]!;
    const lr = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let ell = 0;
      if (pp.logRatioCoef[0][i]) ell += pp.logRatioCoef[0][i]! * lp[0][i]!;
      if (pp.logRatioCoef[1][i]) ell += pp.logRatioCoef[1][i]! * lp[1][i]!;
      lr[i] = ell - pp.oldTerm[i]!;
      const f = prep.aggFactor[i]!;
      if (f === 0) continue;
      let tokenLoss = clippedSurrogateToken(lr[i]!, prep.tokenAdvantage[i]!, cfg).loss;
      if (cfg.klCoef > 0) tokenLoss += cfg.klCoef * k3Kl(pp.refTerm![i]! - ell);
      if (cfg.entropyCoef > 0) {
        const h = entropies![p]!;
        const m = pp.pair.masks;
        tokenLoss -= cfg.entropyCoef * ((m[0][i] ? h[0][i]! : 0) + (m[1][i] ? h[1][i]! : 0));
      }
      loss += f * pp.tokenWeight[i]! * tokenLoss;
    }
    return lr;
  });
  const cat = (parts: ArrayLike<number>[]): Float64Array => {
    const out = new Float64Array(parts.length * n);
    parts.forEach((a, i) => out.set(Array.from(a), i * n));
    return out;
  };
  const stats = surrogateStats(
    cat(logRatios),
    cat(prep.pairs.map(() => prep.tokenAdvantage)),
    cat(prep.pairs.map(() => prep.valid)),
    cfg,
    loss,
  );
  return { loss, logRatios, stats };
}

/** The stacked-pass loss (what `grpoLogProbLoss` computes in jax-js) on plain arrays. */
export function grpoStackedLossReference(
  extras: GrpoLossExtras,
  logProbs: ArrayLike<number>,
  cfg: GrpoLossConfig,
): { loss: number; logRatios: Float64Array; stats: GrpoLossStats } {
  const { coef, oldTerm, adv, factor } = extras as Record<"coef" | "oldTerm" | "adv" | "factor", Float32Array>;
  const n = coef.length;
  if (logProbs.length !== n) throw new GrpoConfigError(`logProbs has ${logProbs.length} values, expected ${n}`);
  const logRatios = new Float64Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    if (!coef[i]) continue;
    const ell = coef[i]! * logProbs[i]!;
    logRatios[i] = ell - oldTerm[i]!;
    let tokenLoss = clippedSurrogateToken(logRatios[i]!, adv[i]!, cfg).loss;
    if (cfg.klCoef > 0) tokenLoss += cfg.klCoef * k3Kl(extras["refTerm"]![i]! - ell);
    loss += factor[i]! * tokenLoss;
  }
  return { loss, logRatios, stats: surrogateStats(logRatios, adv, coef, cfg, loss) };
}
