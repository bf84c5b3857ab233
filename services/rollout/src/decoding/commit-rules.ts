/**
 * Which masked positions get committed in one step. Every function takes the candidates'
 * scores in candidate order and returns the chosen candidate indices (ascending).
 */

/** Indices of the k highest scores; ties go to the lower index (a stable, reproducible order). */
export function topKIndices(scores: readonly number[], k: number): number[] {
  const order = scores.map((_, i) => i).sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
  return order.slice(0, Math.max(0, Math.min(k, scores.length))).sort((a, b) => a - b);
}

/**
 * Fast-dLLM threshold rule: every candidate with confidence >= threshold, and always at
 * least the most confident one. A threshold >= 1 means exactly one token per step.
 */
export function thresholdCommit(confidences: readonly number[], threshold: number): number[] {
  if (confidences.length === 0) return [];
  const best = topKIndices(confidences, 1);
  if (threshold >= 1) return best;
  const chosen = confidences.flatMap((c, i) => (c >= threshold ? [i] : []));
  return chosen.length > 0 ? chosen : best;
}

/**
 * Fast-dLLM factor rule: sort confidences c_1 >= c_2 >= ...; commit the top n where n is the
 * largest count such that (k + 1) * (1 - c_k) < factor for every k in 2..n (n >= 1 always).
 */
export function factorCommit(confidences: readonly number[], factor: number): number[] {
  if (confidences.length === 0) return [];
  const order = confidences.map((_, i) => i).sort((a, b) => (confidences[b] as number) - (confidences[a] as number) || a - b);
  let n = 1;
  while (n < order.length) {
    const k = n + 1;
    const c = confidences[order[n] as number] as number;
    if ((k + 1) * (1 - c) < factor) n = k;
    else break;
  }
  return order.slice(0, n).sort((a, b) => a - b);
}

/** Tokens to commit this step so that `remaining` masks are gone after `stepsLeft` steps, evenly. */
export function scheduledCount(remaining: number, stepsLeft: number): number {
  if (stepsLeft <= 1) return remaining;
  return Math.min(remaining, Math.ceil(remaining / stepsLeft));
}

/**
 * Dream's `alg_temp`: draw k positions without replacement with probabilities
 * softmax(confidence / algTemp), as Gumbel-top-k with one uniform per candidate.
 */
export function sampleKByConfidence(confidences: readonly number[], k: number, algTemp: number, uniforms: readonly number[]): number[] {
  const keys = confidences.map((c, i) => c / algTemp - Math.log(-Math.log(uniforms[i] as number)));
  return topKIndices(keys, k);
}

/**
 * Dream's `origin` order: each masked position is revealed this step with probability
 * 1 / stepsLeft (all of them on the last step), independently of the model's confidence.
 */
export function originCommit(uniforms: readonly number[], stepsLeft: number): number[] {
  if (stepsLeft <= 1) return uniforms.map((_, i) => i);
  const p = 1 / stepsLeft;
  return uniforms.flatMap((u, i) => (u < p ? [i] : []));
}
