import { clippedSurrogateToken } from "./clipped-surrogate.js";
import type { GrpoLossConfig } from "./grpo-config.js";

export interface GrpoLossStats {
  loss: number;
  /** Scored tokens the stats cover (response tokens × mask pairs). */
  tokens: number;
  /** Fraction of tokens whose gradient the clip removed (either side). */
  clipFraction: number;
  clipLowFraction: number;
  clipHighFraction: number;
  dualClipFraction: number;
  ratioMean: number;
  ratioMin: number;
  ratioMax: number;
  /** Mean of (r − 1) − log r: k3 estimate of KL(old ‖ new) on the tokens. */
  approxKl: number;
}

/** Clip and ratio statistics over the positions where `scored` is nonzero. */
export function surrogateStats(
  logRatios: ArrayLike<number>,
  advantages: ArrayLike<number>,
  scored: ArrayLike<number>,
  cfg: GrpoLossConfig,
  loss: number,
): GrpoLossStats {
  let tokens = 0;
  let low = 0;
  let high = 0;
  let dual = 0;
  let rSum = 0;
  let rMin = Number.POSITIVE_INFINITY;
  let rMax = Number.NEGATIVE_INFINITY;
  let kl = 0;
  for (let i = 0; i < scored.length; i++) {
    if (!scored[i]) continue;
    const s = clippedSurrogateToken(logRatios[i]!, advantages[i]!, cfg);
    tokens++;
    if (s.clippedLow) low++;
    if (s.clippedHigh) high++;
    if (s.dualClipped) dual++;
    rSum += s.ratio;
    rMin = Math.min(rMin, s.ratio);
    rMax = Math.max(rMax, s.ratio);
    kl += s.ratio - 1 - Math.log(s.ratio);
  }
  const d = Math.max(1, tokens);
  return {
    loss,
    tokens,
    clipFraction: (low + high) / d,
    clipLowFraction: low / d,
    clipHighFraction: high / d,
    dualClipFraction: dual / d,
    ratioMean: tokens ? rSum / tokens : 1,
    ratioMin: tokens ? rMin : 1,
    ratioMax: tokens ? rMax : 1,
    approxKl: kl / d,
  };
}
