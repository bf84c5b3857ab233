import type { GrpoBatch } from "../grpo/grpo-batch.js";

/**
 * Sequence lengths are rounded up to a multiple of this, so jax-js compiles one kernel set per
 * bucket instead of one per distinct batch length.
 */
export const DEFAULT_SEQ_BUCKET = 16;

/** The length padBatchToBucket pads a batch of `seqLen` to: the next multiple of `bucket`, at most `maxSeqLen` (never below `seqLen`). */
export function bucketSeqLen(seqLen: number, maxSeqLen: number, bucket = DEFAULT_SEQ_BUCKET): number {
  return Math.max(seqLen, Math.min(maxSeqLen, Math.ceil(seqLen / bucket) * bucket));
}

/**
 * The batch with its rows right-padded to `seqLen` (a multiple of `bucket`, at most `maxSeqLen`).
 * Padding is PAD with attention and response masks 0, so no real position sees it and the loss
 * does not cover it: the update is the same as on the unpadded batch.
 */
export function padBatchToBucket(batch: GrpoBatch, padId: number, maxSeqLen: number, bucket = DEFAULT_SEQ_BUCKET): GrpoBatch {
  const { batchSize: B, seqLen: T } = batch;
  const target = bucketSeqLen(T, maxSeqLen, bucket);
  if (target === T) return batch;
  const tokens = new Int32Array(B * target).fill(padId);
  const attentionMask = new Uint8Array(B * target);
  const responseMask = new Uint8Array(B * target);
  for (let b = 0; b < B; b++) {
    tokens.set(batch.tokens.subarray(b * T, (b + 1) * T), b * target);
    attentionMask.set(batch.attentionMask.subarray(b * T, (b + 1) * T), b * target);
    responseMask.set(batch.responseMask.subarray(b * T, (b + 1) * T), b * target);
  }
  return { batchSize: B, seqLen: target, tokens, attentionMask, responseMask, advantages: batch.advantages };
}
