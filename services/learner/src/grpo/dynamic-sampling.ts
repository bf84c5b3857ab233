/**
 * DAPO-style dynamic sampling: groups whose samples all got the same reward (all pass / all
 * fail) carry no advantage; drop them and tell the caller how many more groups to draw.
 */

export interface RewardGroup<T = unknown> {
  groupId: string | number;
  rewards: readonly number[];
  /** Anything the caller wants carried along (samples, prompt id). */
  payload?: T;
}

export interface DynamicSamplingResult<T> {
  kept: RewardGroup<T>[];
  /** Groups dropped because all their rewards were equal. */
  dropped: number;
  /** Groups still missing to reach the target (0 when enough are kept). */
  moreNeeded: number;
}

/** True when a group's rewards are not all equal (so its advantages are not all zero). */
export function isInformativeGroup(rewards: readonly number[]): boolean {
  if (rewards.length < 2) return false;
  const first = rewards[0]!;
  return rewards.some((r) => r !== first);
}

/**
 * Keeps informative groups, in order, up to `targetGroups` (extra ones are not returned so the
 * batch size stays fixed).
 */
export function filterInformativeGroups<T>(groups: readonly RewardGroup<T>[], targetGroups: number): DynamicSamplingResult<T> {
  if (!Number.isInteger(targetGroups) || targetGroups < 0)
    throw new RangeError(`targetGroups must be a non-negative integer, got ${targetGroups}`);
  const informative = groups.filter((g) => isInformativeGroup(g.rewards));
  const kept = informative.slice(0, targetGroups);
  return { kept, dropped: groups.length - informative.length, moreNeeded: Math.max(0, targetGroups - informative.length) };
}

/**
 * Prompt difficulty filter (Dream-Coder / DAPO): drop prompts the current policy solves G/G or
 * 0/G, judged from a pass count out of G samples.
 */
export function keepByDifficulty(
  passes: number,
  samples: number,
  opts: { dropAllSolved?: boolean; dropNoneSolved?: boolean } = {},
): boolean {
  if (opts.dropAllSolved ?? true) {
    if (passes >= samples) return false;
  }
  if (opts.dropNoneSolved ?? true) {
    if (passes <= 0) return false;
  }
  return true;
}
