import type { GrpoLossConfig } from "./grpo-config.js";

/**
 * Log-ratios are clamped to ±LOG_RATIO_CLAMP before exp: with 1/t weights inside the ratio a
 * log-ratio of 30+ is reachable and exp would overflow float32 (verl clamps at 20 too).
 */
export const LOG_RATIO_CLAMP = 20;

export interface SurrogateToken {
  /** −min(r·A, clip(r)·A), bounded by −c·A for A < 0 when dual-clip is on. */
  loss: number;
  ratio: number;
  /** A > 0 and r > 1 + ε_high: this token gives no gradient. */
  clippedHigh: boolean;
  /** A < 0 and r < 1 − ε_low: this token gives no gradient. */
  clippedLow: boolean;
  /** A < 0 and the dual-clip bound −c·A was the active one. */
  dualClipped: boolean;
}

type ClipConfig = Pick<GrpoLossConfig, "clipEpsLow" | "clipEpsHigh" | "dualClipC">;

export function clampLogRatio(x: number): number {
  return Math.min(LOG_RATIO_CLAMP, Math.max(-LOG_RATIO_CLAMP, x));
}

/** PPO clipped surrogate of one token with clip-higher and optional dual-clip. */
export function clippedSurrogateToken(logRatio: number, advantage: number, cfg: ClipConfig): SurrogateToken {
  const ratio = Math.exp(clampLogRatio(logRatio));
  const lo = 1 - cfg.clipEpsLow;
  const hi = 1 + cfg.clipEpsHigh;
  const clipped = Math.min(hi, Math.max(lo, ratio));
  const pg = Math.max(-advantage * ratio, -advantage * clipped);
  let loss = pg;
  let dualClipped = false;
  if (cfg.dualClipC !== null && advantage < 0) {
    const bound = -advantage * cfg.dualClipC;
    if (pg > bound) {
      loss = bound;
      dualClipped = true;
    }
  }
  return {
    loss,
    ratio,
    clippedHigh: advantage > 0 && ratio > hi,
    clippedLow: advantage < 0 && ratio < lo,
    dualClipped,
  };
}

/** k3 estimator of KL(π_new ‖ π_ref) from log π_ref − log π_new (unbiased, always ≥ 0). */
export function k3Kl(refMinusNew: number): number {
  const x = clampLogRatio(refMinusNew);
  return Math.exp(x) - x - 1;
}
