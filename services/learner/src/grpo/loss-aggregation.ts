import type { LossAggregation } from "./grpo-config.js";

/**
 * Reduces per-token losses [B, T] (row-major) to a scalar; `valid` marks the tokens that count
 * (response tokens). Rows without valid tokens contribute 0 and, for the sequence means,
 * are left out of the denominator.
 */
export function aggregateTokenLoss(
  tokenLoss: ArrayLike<number>,
  valid: ArrayLike<number>,
  batchSize: number,
  seqLen: number,
  mode: LossAggregation,
): number {
  if (tokenLoss.length !== batchSize * seqLen || valid.length !== batchSize * seqLen) {
    throw new RangeError(`expected ${batchSize}x${seqLen} token arrays, got ${tokenLoss.length} and ${valid.length}`);
  }
  if (mode === "token-mean") {
    let s = 0;
    let n = 0;
    for (let i = 0; i < tokenLoss.length; i++) {
      if (valid[i]) {
        s += tokenLoss[i]!;
        n++;
      }
    }
    return n > 0 ? s / n : 0;
  }
  let total = 0;
  let rows = 0;
  for (let b = 0; b < batchSize; b++) {
    let s = 0;
    let n = 0;
    for (let j = b * seqLen; j < (b + 1) * seqLen; j++) {
      if (valid[j]) {
        s += tokenLoss[j]!;
        n++;
      }
    }
    if (n === 0) continue;
    total += mode === "seq-mean-token-sum" ? s : s / n;
    rows++;
  }
  return rows > 0 ? total / rows : 0;
}

/**
 * Per-token factors f such that aggregate(L) = Σ f_j·L_j: the same reduction as
 * `aggregateTokenLoss`, in a form a differentiable backend applies with one multiply and sum.
 */
export function aggregationFactors(valid: ArrayLike<number>, batchSize: number, seqLen: number, mode: LossAggregation): Float32Array {
  const f = new Float32Array(batchSize * seqLen);
  if (mode === "token-mean") {
    let n = 0;
    for (let i = 0; i < f.length; i++) if (valid[i]) n++;
    if (n > 0) for (let i = 0; i < f.length; i++) if (valid[i]) f[i] = 1 / n;
    return f;
  }
  const counts: number[] = [];
  for (let b = 0; b < batchSize; b++) {
    let n = 0;
    for (let j = b * seqLen; j < (b + 1) * seqLen; j++) if (valid[j]) n++;
    counts.push(n);
  }
  const rows = counts.filter((n) => n > 0).length;
  for (let b = 0; b < batchSize; b++) {
    const n = counts[b]!;
    if (n === 0) continue;
    const w = mode === "seq-mean-token-sum" ? 1 / rows : 1 / (rows * n);
    for (let j = b * seqLen; j < (b + 1) * seqLen; j++) if (valid[j]) f[j] = w;
  }
  return f;
}
