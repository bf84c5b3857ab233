/** Learning-rate schedule: linear warmup, then constant or cosine decay to a floor. */

export const DEFAULT_WARMUP_STEPS = 10;
export const DEFAULT_MIN_LR_RATIO = 0.1;

export interface LrScheduleConfig {
  baseLr: number;
  /** Steps of linear warmup; step s < warmup gets baseLr·(s+1)/warmup. @defaultValue DEFAULT_WARMUP_STEPS */
  warmupSteps: number;
  /** @defaultValue "constant" */
  decay: "constant" | "cosine";
  /** Total steps for cosine decay (required for "cosine"). */
  totalSteps?: number;
  /** Cosine decays to baseLr·minLrRatio. @defaultValue DEFAULT_MIN_LR_RATIO */
  minLrRatio: number;
}

/**
 * LR for optimizer step `step` (0-based). `scale` is the collapse guard's cumulative LR factor,
 * kept outside the schedule so a rollback lowers the LR without restarting warmup.
 */
export function learningRateAt(step: number, cfg: LrScheduleConfig, scale = 1): number {
  if (!(cfg.baseLr >= 0)) throw new RangeError(`baseLr must be >= 0, got ${cfg.baseLr}`);
  if (step < cfg.warmupSteps) return (scale * cfg.baseLr * (step + 1)) / cfg.warmupSteps;
  if (cfg.decay === "constant") return scale * cfg.baseLr;
  const total = cfg.totalSteps;
  if (total === undefined || total <= cfg.warmupSteps) throw new RangeError(`cosine decay needs totalSteps > warmupSteps, got ${total}`);
  const progress = Math.min(1, (step - cfg.warmupSteps) / (total - cfg.warmupSteps));
  const minLr = cfg.baseLr * cfg.minLrRatio;
  return scale * (minLr + 0.5 * (cfg.baseLr - minLr) * (1 + Math.cos(Math.PI * progress)));
}
