import { adamwStep, DEFAULT_ADAMW_CONFIG, type AdamWConfig, type AdamWState } from "../optim/adamw.js";
import { clipGradNorm } from "../optim/grad-clip.js";
import type { NamedTensors } from "../optim/named-tensors.js";
import { drawMaskPairs, type CoupledMaskOptions } from "./coupled-masks.js";
import { DEFAULT_GRPO_LOSS_CONFIG, GrpoConfigError, validateGrpoLossConfig, type GrpoLossConfig } from "./grpo-config.js";
import { grpoLogProbLoss, type LogProbLoss } from "./grpo-loss-jax.js";
import { grpoStackedLossReference } from "./grpo-loss-reference.js";
import type { GrpoLossStats } from "./grpo-loss-stats.js";
import type { GrpoBatch } from "./grpo-batch.js";
import { grpoLossExtras, stackMaskPasses, type PolicyTokenBatch, type StackedPasses } from "./stacked-passes.js";

/**
 * One GRPO update of a batch: coupled mask pairs, old-policy log-probs (once, before any change),
 * then `ppoEpochs` optimizer steps of the clipped objective.
 */

export const DEFAULT_MASK_EPOCHS = 1;
export const DEFAULT_PPO_EPOCHS = 1;
export const DEFAULT_MAX_GRAD_NORM = 1.0;

/** What the update needs from the policy; `JaxPolicy` (model/jax-policy.ts) has this shape. */
export interface GrpoPolicy {
  /** log p(targets) at every position, [N·T] (no gradient). */
  tokenLogProbs(weights: NamedTensors, batch: PolicyTokenBatch): Promise<Float32Array>;
  /** `loss(logProbs, extras)`, its gradient w.r.t. every weight, and the log-probs of that forward. */
  lossAndGrad(
    weights: NamedTensors,
    batch: PolicyTokenBatch,
    loss: LogProbLoss,
    extras: Record<string, Float32Array>,
  ): Promise<{ loss: number; logProbs: Float32Array; grads: NamedTensors }>;
}

/**
 * How mask pairs are used across PPO epochs: `all` scores every pair in each optimizer step;
 * `cycle` uses pair (epoch mod maskEpochs) in epoch `epoch` (DiffuCoder's per-iteration seeds).
 */
export type MaskPairSchedule = "all" | "cycle";

export interface GrpoUpdateConfig {
  loss: GrpoLossConfig;
  /** Coupled mask pairs drawn per sample. @defaultValue DEFAULT_MASK_EPOCHS */
  maskEpochs: number;
  /** Optimizer steps on the same batch. @defaultValue DEFAULT_PPO_EPOCHS */
  ppoEpochs: number;
  /** @defaultValue "all" */
  maskPairSchedule: MaskPairSchedule;
  mask: CoupledMaskOptions;
  /** @defaultValue DEFAULT_MAX_GRAD_NORM */
  maxGradNorm: number;
  adamw: AdamWConfig;
}

export const DEFAULT_GRPO_UPDATE_CONFIG: Readonly<GrpoUpdateConfig> = Object.freeze({
  loss: DEFAULT_GRPO_LOSS_CONFIG,
  maskEpochs: DEFAULT_MASK_EPOCHS,
  ppoEpochs: DEFAULT_PPO_EPOCHS,
  maskPairSchedule: "all",
  mask: {},
  maxGradNorm: DEFAULT_MAX_GRAD_NORM,
  adamw: DEFAULT_ADAMW_CONFIG,
});

export interface GrpoEpochStats extends GrpoLossStats {
  /** Global gradient norm before clipping. */
  gradNorm: number;
  lr: number;
  /** False when the loss or gradient was not finite and the step was skipped. */
  applied: boolean;
}

export interface GrpoUpdateResult {
  epochs: GrpoEpochStats[];
  /** The per-sample seeds of every mask pair (store them to replay the update). */
  maskSeeds: Uint32Array[];
}

/**
 * Runs the update in place on `weights` and `optimizer`. `lrAt(optimizerStep)` gives the LR of
 * each optimizer step (schedule × collapse-guard scale). Deterministic given `seed`.
 */
export async function runGrpoUpdate(args: {
  policy: GrpoPolicy;
  weights: NamedTensors;
  optimizer: AdamWState;
  batch: GrpoBatch;
  maskId: number;
  seed: number;
  lrAt: (optimizerStep: number) => number;
  cfg?: Partial<GrpoUpdateConfig>;
  /**
   * Weights of the policy version that generated the samples, for the old log-probs; defaults to
   * `weights` (exact for on-policy samples, an approximation for stale ones).
   */
  oldWeights?: NamedTensors;
  /**
   * On-policy (no `oldWeights`): take the old log-probs of the first slot from the first
   * optimizer step's own forward (stop-gradient) instead of a separate forward pass. The same
   * update (the old policy is these weights on the same inputs) up to float rounding: a separate
   * forward-only program can differ from the update's forward in the last bits, so its ratio is
   * 1 ± ~1e-7 where the fused one is exactly 1. @defaultValue false
   */
  fuseOldLogProbs?: boolean;
}): Promise<GrpoUpdateResult> {
  const cfg: GrpoUpdateConfig = { ...DEFAULT_GRPO_UPDATE_CONFIG, ...args.cfg };
  validateGrpoLossConfig(cfg.loss);
  if (!Number.isInteger(cfg.ppoEpochs) || cfg.ppoEpochs < 1)
    throw new GrpoConfigError(`ppoEpochs must be a positive integer, got ${cfg.ppoEpochs}`);
  const { batch } = args;
  const pairs = drawMaskPairs(args.seed, batch.responseMask, batch.batchSize, batch.seqLen, cfg.maskEpochs, cfg.mask);
  // One stacked forward per schedule slot: all pairs together, or one pair per epoch.
  const slots: StackedPasses[] =
    cfg.maskPairSchedule === "all"
      ? [stackMaskPasses(batch, pairs, args.maskId, cfg.loss)]
      : pairs.map((p) => stackMaskPasses(batch, [p], args.maskId, cfg.loss));
  const fuse = (args.fuseOldLogProbs ?? false) && !args.oldWeights;
  // null: the slot's old log-probs come from epoch 0's own forward (fuse).
  const extras: (Record<string, Float32Array> | null)[] = [];
  for (const [i, s] of slots.entries())
    extras.push(fuse && i === 0 ? null : grpoLossExtras(s, await args.policy.tokenLogProbs(args.oldWeights ?? args.weights, s.tokens), cfg.loss));
  const lossFn = grpoLogProbLoss(cfg.loss);
  const epochs: GrpoEpochStats[] = [];
  for (let e = 0; e < cfg.ppoEpochs; e++) {
    const slot = e % slots.length;
    const s = slots[slot]!;
    let r: Awaited<ReturnType<GrpoPolicy["lossAndGrad"]>>;
    const ready = extras[slot];
    if (ready) r = await args.policy.lossAndGrad(args.weights, s.tokens, lossFn, ready);
    else {
      const { oldTerm: _unused, ...withoutOld } = grpoLossExtras(s, new Float32Array(s.coef.length), cfg.loss);
      r = await args.policy.lossAndGrad(args.weights, s.tokens, grpoLogProbLoss(cfg.loss, { oldFromSelf: true }), withoutOld);
      extras[slot] = grpoLossExtras(s, r.logProbs, cfg.loss);
    }
    const stats = grpoStackedLossReference(extras[slot]!, r.logProbs, cfg.loss).stats;
    const clip = clipGradNorm(r.grads, cfg.maxGradNorm);
    const lr = args.lrAt(args.optimizer.step);
    const applied = clip.finite && Number.isFinite(r.loss);
    if (applied) adamwStep(args.weights, r.grads, args.optimizer, lr, cfg.adamw);
    epochs.push({ ...stats, loss: r.loss, gradNorm: clip.norm, lr, applied });
  }
  return { epochs, maskSeeds: pairs.map((p) => Uint32Array.from(p.seeds)) };
}
