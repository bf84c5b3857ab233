/**
 * Collapse guard (issue 9): watches per-step mean reward and held-out pass@1 and decides when a
 * run has collapsed, so the learner rolls back to the last good checkpoint and lowers the LR.
 * Pure: every call takes the state and returns the next one with a decision; the learner does
 * the I/O (loading the checkpoint, events, metrics).
 */

export const DEFAULT_REWARD_WINDOW = 30;
export const DEFAULT_REWARD_SMOOTHING = 16;
export const DEFAULT_MIN_BASELINE_STEPS = 5;
export const DEFAULT_REWARD_RELATIVE_DROP = 0.5;
export const DEFAULT_REWARD_ABSOLUTE_DROP = 0.05;
export const DEFAULT_REWARD_FLOOR = 0;
export const DEFAULT_REWARD_PATIENCE = 3;
export const DEFAULT_PASS_DROP = 0.05;
export const DEFAULT_PASS_PATIENCE = 1;
export const DEFAULT_PASS_Z = 2;
export const DEFAULT_LR_FACTOR = 0.5;
export const DEFAULT_MAX_ROLLBACKS = 3;

export interface CollapseGuardConfig {
  /** Healthy steps whose mean reward forms the baseline. @defaultValue DEFAULT_REWARD_WINDOW */
  rewardWindow: number;
  /**
   * The check judges the mean reward of the last this-many steps, not one step: with 4 prompts × 8
   * samples one step's mean reward is noise (measured in the demo: sd 0.21 around 0.39, no
   * autocorrelation), and judging single steps (window 10) rolled that healthy run back three
   * times in 333 steps, halving the LR each time. Resampling that run's rewards, single steps
   * falsely trigger in 99 % of 333-step runs, 16-step means (window 30, patience 3) in 0.9 %,
   * while a collapse to zero reward is still caught about 9 steps after it starts.
   * 1 = judge single steps.
   * @defaultValue DEFAULT_REWARD_SMOOTHING
   */
  rewardSmoothing: number;
  /** Healthy steps needed before step rewards are judged. @defaultValue DEFAULT_MIN_BASELINE_STEPS */
  minBaselineSteps: number;
  /** A step is bad when its smoothed reward < baseline·(1 − this) ... @defaultValue DEFAULT_REWARD_RELATIVE_DROP */
  rewardRelativeDrop: number;
  /** ... and baseline − smoothed reward ≥ this (ignores noise at low rewards). @defaultValue DEFAULT_REWARD_ABSOLUTE_DROP */
  rewardAbsoluteDrop: number;
  /** A smoothed reward at or below this is bad whenever the baseline is above it. @defaultValue DEFAULT_REWARD_FLOOR */
  rewardFloor: number;
  /** Consecutive bad (smoothed) steps that trigger a rollback. @defaultValue DEFAULT_REWARD_PATIENCE */
  rewardPatience: number;
  /** An eval is bad when pass@1 < best healthy pass@1 − this (fraction, 0.05 = 5 points). @defaultValue DEFAULT_PASS_DROP */
  passDrop: number;
  /** Consecutive bad evals that trigger a rollback. @defaultValue DEFAULT_PASS_PATIENCE */
  passPatience: number;
  /**
   * ... and the drop must also exceed this many standard errors of the difference of the two
   * pass@1 estimates (binomial, from each eval's n), so sampling noise of a 200-task eval (±3.5
   * points each) is not taken for a collapse. 0 = passDrop alone. @defaultValue DEFAULT_PASS_Z
   */
  passZ: number;
  /** LR multiplier applied on each rollback. @defaultValue DEFAULT_LR_FACTOR */
  lrFactor: number;
  /** After this many rollbacks the guard says stop. @defaultValue DEFAULT_MAX_ROLLBACKS */
  maxRollbacks: number;
}

export const DEFAULT_COLLAPSE_GUARD_CONFIG: Readonly<CollapseGuardConfig> = Object.freeze({
  rewardWindow: DEFAULT_REWARD_WINDOW,
  rewardSmoothing: DEFAULT_REWARD_SMOOTHING,
  minBaselineSteps: DEFAULT_MIN_BASELINE_STEPS,
  rewardRelativeDrop: DEFAULT_REWARD_RELATIVE_DROP,
  rewardAbsoluteDrop: DEFAULT_REWARD_ABSOLUTE_DROP,
  rewardFloor: DEFAULT_REWARD_FLOOR,
  rewardPatience: DEFAULT_REWARD_PATIENCE,
  passDrop: DEFAULT_PASS_DROP,
  passPatience: DEFAULT_PASS_PATIENCE,
  passZ: DEFAULT_PASS_Z,
  lrFactor: DEFAULT_LR_FACTOR,
  maxRollbacks: DEFAULT_MAX_ROLLBACKS,
});

interface Point {
  step: number;
  value: number;
  /** Sample count behind `value` (held-out evals). */
  n?: number;
}

interface Streak {
  startStep: number;
  count: number;
}

export interface CollapseGuardState {
  /** Rewards of healthy steps that have left the smoothing window (newest last, at most rewardWindow). */
  healthyRewards: Point[];
  /** The last rewardSmoothing steps' rewards, healthy or not (newest last). */
  recentRewards: Point[];
  rewardStreak: Streak | null;
  /** Held-out evals judged healthy. */
  healthyEvals: Point[];
  passStreak: Streak | null;
  /** Steps of checkpoints saved while the run looked healthy. */
  goodCheckpoints: number[];
  /** Cumulative LR factor from rollbacks (multiply the schedule's LR by it). */
  lrScale: number;
  rollbacks: number;
}

export const COLLAPSE_TRIGGERS = ["step_reward", "heldout_pass_at_1"] as const;
export type CollapseTrigger = (typeof COLLAPSE_TRIGGERS)[number];

export type CollapseDecision =
  | { kind: "continue" }
  | { kind: "rollback"; trigger: CollapseTrigger; toStep: number; lrScale: number; reason: string }
  | { kind: "stop"; trigger: CollapseTrigger; reason: string };

export function initialCollapseGuardState(): CollapseGuardState {
  return {
    healthyRewards: [],
    recentRewards: [],
    rewardStreak: null,
    healthyEvals: [],
    passStreak: null,
    goodCheckpoints: [],
    lrScale: 1,
    rollbacks: 0,
  };
}

function mean(points: Point[]): number {
  return points.reduce((s, p) => s + p.value, 0) / points.length;
}

function isBadReward(reward: number, baseline: number, cfg: CollapseGuardConfig): boolean {
  if (reward <= cfg.rewardFloor && baseline > cfg.rewardFloor) return true;
  return reward < baseline * (1 - cfg.rewardRelativeDrop) && baseline - reward >= cfg.rewardAbsoluteDrop;
}

/** Rollback (or stop) once a streak reaches its patience. */
function decide(
  state: CollapseGuardState,
  cfg: CollapseGuardConfig,
  trigger: CollapseTrigger,
  streak: Streak,
  detail: string,
  /** The target must also be at or before this step (the held-out trigger: its best eval's). */
  atMost = Infinity,
): { state: CollapseGuardState; decision: CollapseDecision } {
  if (state.rollbacks >= cfg.maxRollbacks) {
    return { state, decision: { kind: "stop", trigger, reason: `${detail}; ${state.rollbacks} rollbacks already, giving up` } };
  }
  const toStep = newestGoodAtOrBefore(state, Math.min(streak.startStep - 1, atMost));
  if (toStep === null) {
    return { state, decision: { kind: "stop", trigger, reason: `${detail}; no good checkpoint before step ${streak.startStep}` } };
  }
  const lrScale = state.lrScale * cfg.lrFactor;
  const next: CollapseGuardState = {
    healthyRewards: state.healthyRewards.filter((p) => p.step <= toStep),
    recentRewards: state.recentRewards.filter((p) => p.step <= toStep),
    rewardStreak: null,
    healthyEvals: state.healthyEvals.filter((p) => p.step <= toStep),
    passStreak: null,
    goodCheckpoints: state.goodCheckpoints.filter((s) => s <= toStep),
    lrScale,
    rollbacks: state.rollbacks + 1,
  };
  return {
    state: next,
    decision: { kind: "rollback", trigger, toStep, lrScale, reason: `${detail}; roll back to step ${toStep}, LR x${lrScale}` },
  };
}

/**
 * Feeds one training step's mean reward. The step is judged on the mean of the last
 * `rewardSmoothing` rewards against the baseline of healthy steps before them; a bad streak's
 * start is the first step of its window, so a rollback goes to weights from before the window.
 */
export function observeStepReward(
  state: CollapseGuardState,
  cfg: CollapseGuardConfig,
  obs: { step: number; rewardMean: number },
): { state: CollapseGuardState; decision: CollapseDecision } {
  const size = Math.max(1, cfg.rewardSmoothing);
  const recent = [...state.recentRewards, { step: obs.step, value: obs.rewardMean }];
  // Rewards leaving the window join the baseline unless a bad streak is open (more than one when
  // a resumed state was kept under a larger rewardSmoothing).
  const leaving = recent.splice(0, Math.max(0, recent.length - size));
  let healthyRewards = state.healthyRewards;
  if (leaving.length > 0 && !state.rewardStreak) healthyRewards = [...healthyRewards, ...leaving].slice(-cfg.rewardWindow);
  const next = { ...state, healthyRewards, recentRewards: recent };
  if (healthyRewards.length >= cfg.minBaselineSteps && recent.length === size) {
    const baseline = mean(healthyRewards);
    const smoothed = mean(recent);
    if (isBadReward(smoothed, baseline, cfg)) {
      const streak: Streak = state.rewardStreak
        ? { ...state.rewardStreak, count: state.rewardStreak.count + 1 }
        : { startStep: recent[0]!.step, count: 1 };
      const withStreak = { ...next, rewardStreak: streak };
      if (streak.count >= cfg.rewardPatience) {
        const over = recent.length > 1 ? ` (mean of the last ${recent.length} steps)` : "";
        const detail = `step reward ${smoothed.toFixed(3)}${over} vs baseline ${baseline.toFixed(3)} for ${streak.count} steps since step ${streak.startStep}`;
        return decide(withStreak, cfg, "step_reward", streak, detail);
      }
      return { state: withStreak, decision: { kind: "continue" } };
    }
  }
  return { state: { ...next, rewardStreak: null }, decision: { kind: "continue" } };
}

/** Binomial variance of a pass@1 estimate from n tasks (0 when n is unknown). */
function passVariance(p: number, n: number | undefined): number {
  return n && n > 0 ? (p * (1 - p)) / n : 0;
}

/** Feeds one held-out pass@1 measurement (fraction in [0, 1]) over `n` tasks. */
export function observeHeldOutPass(
  state: CollapseGuardState,
  cfg: CollapseGuardConfig,
  obs: { step: number; passAt1: number; n?: number },
): { state: CollapseGuardState; decision: CollapseDecision } {
  const best = bestEval(state);
  if (best) {
    const se = Math.sqrt(passVariance(best.value, best.n) + passVariance(obs.passAt1, obs.n));
    const drop = best.value - obs.passAt1;
    if (drop > cfg.passDrop && drop > cfg.passZ * se) {
      const streak: Streak = state.passStreak
        ? { ...state.passStreak, count: state.passStreak.count + 1 }
        : { startStep: obs.step, count: 1 };
      const withStreak = { ...state, passStreak: streak };
      if (streak.count >= cfg.passPatience) {
        const detail = `held-out pass@1 ${obs.passAt1.toFixed(3)} vs best ${best.value.toFixed(3)} at step ${obs.step}`;
        // A slow slide passes evals that are each within passDrop of the best, so checkpoints
        // after the best eval are already worse: go back to the weights that scored the best.
        return decide(withStreak, cfg, "heldout_pass_at_1", streak, detail, best.step);
      }
      return { state: withStreak, decision: { kind: "continue" } };
    }
  }
  const point: Point = { step: obs.step, value: obs.passAt1, ...(obs.n === undefined ? {} : { n: obs.n }) };
  return {
    state: { ...state, healthyEvals: [...state.healthyEvals, point], passStreak: null },
    decision: { kind: "continue" },
  };
}

/**
 * Records a checkpoint saved at `step`; it counts as good only if no bad streak is open, since
 * weights saved during a slide must not be the rollback target.
 */
export function noteCheckpoint(state: CollapseGuardState, step: number): CollapseGuardState {
  if (state.rewardStreak || state.passStreak) return state;
  return { ...state, goodCheckpoints: [...state.goodCheckpoints.filter((s) => s !== step), step] };
}

/**
 * The checkpoints the learner must keep whatever its keep-last policy says: the two newest good
 * ones (the newest may have generated the very batch or eval that opens a bad streak, and a
 * rollback goes strictly before the streak, so its target can be the second newest), the
 * held-out trigger's target, the newest good one at or before the best eval, and the step-reward
 * trigger's, the newest good one before the current smoothing window (or the open streak's).
 */
export function protectedCheckpoints(state: CollapseGuardState): number[] {
  const keep = [...state.goodCheckpoints].sort((a, b) => b - a).slice(0, 2);
  const add = (step: number | null) => {
    if (step !== null && !keep.includes(step)) keep.push(step);
  };
  const best = bestEvalStep(state);
  if (best !== null) add(newestGoodAtOrBefore(state, best));
  // A step-reward rollback goes before the smoothing window its streak opened with.
  const windowStart = state.rewardStreak?.startStep ?? state.recentRewards[0]?.step;
  if (windowStart !== undefined) add(newestGoodAtOrBefore(state, windowStart - 1));
  return keep;
}

/** The newest good checkpoint at or before `step`, or null. */
function newestGoodAtOrBefore(state: CollapseGuardState, step: number): number | null {
  const c = state.goodCheckpoints.filter((s) => s <= step);
  return c.length > 0 ? Math.max(...c) : null;
}

/** The best healthy held-out eval (the earliest of equals), or null before any eval. */
function bestEval(state: CollapseGuardState): Point | null {
  let best: Point | null = null;
  for (const p of state.healthyEvals) if (!best || p.value > best.value) best = p;
  return best;
}

/** Step of the best healthy held-out eval (the earliest of equals), or null before any eval. */
export function bestEvalStep(state: CollapseGuardState): number | null {
  return bestEval(state)?.step ?? null;
}

/** The newest good checkpoint. */
export function lastGoodCheckpoint(state: CollapseGuardState): number | null {
  return newestGoodAtOrBefore(state, Infinity);
}
