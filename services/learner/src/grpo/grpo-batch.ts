import { groupAdvantages, type GroupAdvantageOptions, type GroupAdvantageStats } from "./group-advantages.js";
import { substituteZeroAdvantage } from "./informative-substitution.js";

/** A batch after advantages and substitution; every array is row-major [B, T] unless noted. */
export interface GrpoBatch {
  batchSize: number;
  seqLen: number;
  /** Prompt + sampled response (+ infill suffix) (+ PAD) per row. */
  tokens: Int32Array;
  /** 1 = a real token whose key may be attended (0 for padding). */
  attentionMask: Uint8Array;
  /** 1 = a response token the loss covers (never prompt or padding). */
  responseMask: Uint8Array;
  /** One advantage per row, [B]. */
  advantages: ArrayLike<number>;
}

/** One rollout sample with its reward, as the learner receives it. */
export interface ScoredSample {
  groupId: string | number;
  promptIds: ArrayLike<number>;
  /** The generated response the loss covers (the caller decides whether it ends at EOS). */
  responseIds: ArrayLike<number>;
  /**
   * Infill samples: the program's tokens after the response (the response is the middle between
   * promptIds and these). Context like the prompt: in the sequence after the response, attended,
   * never masked, no loss.
   */
  suffixIds?: ArrayLike<number>;
  reward: number;
}

export interface BuildGrpoBatchOptions {
  padId: number;
  /** Seed of the informative substitution. */
  seed: number;
  /** Replace zero-advantage samples by informative duplicates. @defaultValue true */
  substitute?: boolean;
  advantage?: GroupAdvantageOptions;
}

export interface BuiltGrpoBatch {
  /** Null when no sample has a nonzero advantage (the step is skipped). */
  batch: GrpoBatch | null;
  /** Row r holds original sample sourceIndex[r]. */
  sourceIndex: Int32Array;
  substituted: number;
  skipped: boolean;
  rewardMean: number;
  advantageStats: GroupAdvantageStats;
  /** Advantages of the original samples (before substitution). */
  advantages: Float64Array;
}

/**
 * Rewards → group advantages → informative substitution → dense [B, T] batch rows of
 * prompt + response (+ suffix for infill samples), right-padded with `padId` (attentionMask 0 on
 * padding). Only response positions are in responseMask (the loss).
 */
export function buildGrpoBatch(samples: readonly ScoredSample[], opts: BuildGrpoBatchOptions): BuiltGrpoBatch {
  const { advantages, stats } = groupAdvantages(
    samples.map((s) => s.reward),
    samples.map((s) => s.groupId),
    opts.advantage,
  );
  const rewardMean = samples.reduce((a, s) => a + s.reward, 0) / Math.max(1, samples.length);
  const sub =
    (opts.substitute ?? true)
      ? substituteZeroAdvantage(advantages, opts.seed)
      : { sourceIndex: Int32Array.from(samples.keys()), substituted: 0, skipped: advantages.every((a) => a === 0) };
  // A sample with an empty response (the model answered nothing) counts in its group's advantages
  // with its reward, but has no token for the loss: it gets no row.
  const sourceIndex = Int32Array.from([...sub.sourceIndex].filter((src) => samples[src]!.responseIds.length > 0));
  const common = {
    sourceIndex,
    substituted: sub.substituted,
    skipped: sub.skipped,
    rewardMean,
    advantageStats: stats,
    advantages,
  };
  if (sub.skipped || sourceIndex.length === 0) return { ...common, batch: null, skipped: true };
  const B = sourceIndex.length;
  const suffixLen = (s: ScoredSample) => s.suffixIds?.length ?? 0;
  const T = Math.max(...[...sourceIndex].map((src) => samples[src]!.promptIds.length + samples[src]!.responseIds.length + suffixLen(samples[src]!)));
  const tokens = new Int32Array(B * T).fill(opts.padId);
  const attentionMask = new Uint8Array(B * T);
  const responseMask = new Uint8Array(B * T);
  const rowAdvantages = new Float64Array(B);
  for (let r = 0; r < B; r++) {
    const src = sourceIndex[r]!;
    const s = samples[src]!;
    rowAdvantages[r] = advantages[src]!;
    const P = s.promptIds.length;
    for (let j = 0; j < P; j++) tokens[r * T + j] = s.promptIds[j]!;
    for (let j = 0; j < s.responseIds.length; j++) {
      tokens[r * T + P + j] = s.responseIds[j]!;
      responseMask[r * T + P + j] = 1;
    }
    const S = suffixLen(s);
    for (let j = 0; j < S; j++) tokens[r * T + P + s.responseIds.length + j] = s.suffixIds![j]!;
    attentionMask.fill(1, r * T, r * T + P + s.responseIds.length + S);
  }
  return { ...common, batch: { batchSize: B, seqLen: T, tokens, attentionMask, responseMask, advantages: rowAdvantages } };
}
