import { createRng } from "./seeded-rng.js";
import { DEFAULT_ZERO_ADVANTAGE_TOL } from "./grpo-config.js";

/**
 * Intra-batch informative substitution (Dream-Coder): slots whose advantage is zero carry no
 * gradient, so they are refilled with duplicates of samples that do, keeping the batch size and
 * thus the per-step gradient signal constant.
 */
export interface SubstitutionResult {
  /** For every slot, the index of the original sample it now holds. */
  sourceIndex: Int32Array;
  /** Slots that were refilled. */
  substituted: number;
  /** True when no sample had a nonzero advantage: the batch carries no signal and is skipped. */
  skipped: boolean;
}

/**
 * Deterministic given `seed`: donors are taken from a seeded shuffle of the informative samples,
 * cycling so duplicates are spread evenly over donors.
 */
export function substituteZeroAdvantage(
  advantages: ArrayLike<number>,
  seed: number,
  tol: number = DEFAULT_ZERO_ADVANTAGE_TOL,
): SubstitutionResult {
  const n = advantages.length;
  const sourceIndex = new Int32Array(n);
  const donors: number[] = [];
  for (let i = 0; i < n; i++) {
    sourceIndex[i] = i;
    if (Math.abs(advantages[i]!) > tol) donors.push(i);
  }
  if (donors.length === 0) return { sourceIndex, substituted: 0, skipped: true };
  const rng = createRng(seed);
  for (let i = donors.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [donors[i], donors[j]] = [donors[j]!, donors[i]!];
  }
  let substituted = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(advantages[i]!) > tol) continue;
    sourceIndex[i] = donors[substituted % donors.length]!;
    substituted++;
  }
  return { sourceIndex, substituted, skipped: false };
}

/** Picks rows of any per-sample array by a substitution's `sourceIndex`. */
export function gatherBySource<T>(items: readonly T[], sourceIndex: ArrayLike<number>): T[] {
  const out: T[] = [];
  for (let i = 0; i < sourceIndex.length; i++) {
    const item = items[sourceIndex[i]!];
    if (item === undefined) throw new RangeError(`source index ${sourceIndex[i]} out of range (${items.length} items)`);
    out.push(item);
  }
  return out;
}

/** Counts skipped batches and substitutions over a run (for stats and metrics). */
export interface SubstitutionTotals {
  batches: number;
  skippedBatches: number;
  substitutedSamples: number;
}

export function addSubstitution(totals: SubstitutionTotals, r: SubstitutionResult): SubstitutionTotals {
  return {
    batches: totals.batches + 1,
    skippedBatches: totals.skippedBatches + (r.skipped ? 1 : 0),
    substitutedSamples: totals.substitutedSamples + r.substituted,
  };
}
