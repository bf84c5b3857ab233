// Dynamic sampling (DAPO): which groups of a step go to the learner. The one home of the rule;
// the learner substitutes uninformative groups itself (informative substitution).

/** The distinct rewards of each group (same prompt), groups in first-seen order. */
export function groupRewards(items: { group: string; reward: number }[]): Map<string, Set<number>> {
  const groups = new Map<string, Set<number>>();
  for (const it of items) groups.set(it.group, (groups.get(it.group) ?? new Set<number>()).add(it.reward));
  return groups;
}

/** A group is informative for GRPO when its rewards are not all equal. */
const informative = (rewards: Set<number>) => rewards.size > 1;

/**
 * Dynamic sampling: which groups (prompt ids) go to the learner — at most `max`, informative
 * groups first, each kind in rollout order. Without oversampling every group is kept (the
 * learner substitutes uninformative ones itself).
 */
export function groupsToTrain(groups: Map<string, Set<number>>, max: number): Set<string> {
  const order = [...groups.keys()];
  const first = order.filter((g) => informative(groups.get(g)!));
  const rest = order.filter((g) => !informative(groups.get(g)!));
  return new Set([...first, ...rest].slice(0, max));
}

/** Fraction of groups whose rewards are not all equal. */
export function informativeGroupFraction(groups: Map<string, Set<number>>): number {
  if (groups.size === 0) return 0;
  return [...groups.values()].filter(informative).length / groups.size;
}
