import { DEFAULT_ADVANTAGE_EPS } from "./grpo-config.js";

export interface GroupAdvantageOptions {
  /** Divide by the group std (GRPO); false = Dr.GRPO (mean-centred only). @defaultValue true */
  scaleByStd?: boolean;
  /** @defaultValue DEFAULT_ADVANTAGE_EPS */
  eps?: number;
}

export interface GroupAdvantageStats {
  groups: number;
  /** Groups whose rewards are all equal: every advantage in them is 0. */
  zeroVarianceGroups: number;
  meanAbsAdvantage: number;
}

/**
 * A_i = (r_i − mean_g) / (std_g + ε) per prompt group g (std with N−1, as TRL and verl use).
 * A group of one sample has no baseline and gets A = 0.
 */
export function groupAdvantages(
  rewards: readonly number[],
  groupIds: readonly (string | number)[],
  opts: GroupAdvantageOptions = {},
): { advantages: Float64Array; stats: GroupAdvantageStats } {
  if (rewards.length !== groupIds.length) {
    throw new RangeError(`rewards (${rewards.length}) and groupIds (${groupIds.length}) differ in length`);
  }
  const scaleByStd = opts.scaleByStd ?? true;
  const eps = opts.eps ?? DEFAULT_ADVANTAGE_EPS;
  const members = new Map<string | number, number[]>();
  rewards.forEach((r, i) => {
    if (!Number.isFinite(r)) throw new RangeError(`reward ${i} is not finite: ${r}`);
    const g = groupIds[i]!;
    const list = members.get(g);
    if (list) list.push(i);
    else members.set(g, [i]);
  });
  const advantages = new Float64Array(rewards.length);
  let zeroVarianceGroups = 0;
  for (const idx of members.values()) {
    const n = idx.length;
    const mean = idx.reduce((s, i) => s + rewards[i]!, 0) / n;
    const ss = idx.reduce((s, i) => s + (rewards[i]! - mean) ** 2, 0);
    if (n < 2 || ss === 0) {
      zeroVarianceGroups++;
      continue;
    }
    const std = Math.sqrt(ss / (n - 1));
    for (const i of idx) advantages[i] = scaleByStd ? (rewards[i]! - mean) / (std + eps) : rewards[i]! - mean;
  }
  const meanAbsAdvantage = advantages.reduce((s, a) => s + Math.abs(a), 0) / Math.max(1, advantages.length);
  return { advantages, stats: { groups: members.size, zeroVarianceGroups, meanAbsAdvantage } };
}
