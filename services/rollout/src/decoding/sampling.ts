/**
 * Dream `sample_tokens` semantics over one logits row: temperature, then top-p, then top-k,
 * softmax, then a draw (temperature > 0) or argmax (temperature 0), and the confidence that
 * orders unmasking for each `alg`.
 */
import { DECODING_ALGS } from "@rlmesh/shared/decoding-defaults";

export type UnmaskAlg = (typeof DECODING_ALGS)[number];
export const UNMASK_ALGS: readonly UnmaskAlg[] = DECODING_ALGS;

/** Dream's epsilon inside log(p + eps) for the entropy confidence. */
export const ENTROPY_EPS = 1e-10;

export interface SamplingOptions {
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
}

/**
 * Writes the sampling distribution of `logits[offset .. offset+vocab)` into `probs`.
 * Filtered tokens get probability 0.
 */
export function samplingProbs(logits: ArrayLike<number>, offset: number, vocab: number, opts: SamplingOptions, probs: Float64Array): void {
  const scale = opts.temperature > 0 ? 1 / opts.temperature : 1;
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) {
    const x = (logits[offset + v] as number) * scale;
    probs[v] = x;
    if (x > max) max = x;
  }
  if (opts.topP >= 1 && !(opts.topK > 0 && opts.topK < vocab)) {
    // No filtering: a plain softmax (the common case, kept allocation-free).
    let total = 0;
    for (let v = 0; v < vocab; v++) {
      const p = Math.exp((probs[v] as number) - max);
      probs[v] = p;
      total += p;
    }
    for (let v = 0; v < vocab; v++) probs[v] = (probs[v] as number) / total;
    return;
  }
  const keep = new Uint8Array(vocab).fill(1);
  {
    const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => (probs[b] as number) - (probs[a] as number));
    if (opts.topP < 1) {
      // Dream's top_p_logits: drop a token once the mass strictly before it exceeds top_p.
      let total = 0;
      for (let v = 0; v < vocab; v++) total += Math.exp((probs[v] as number) - max);
      let cumBefore = 0;
      for (let r = 0; r < vocab; r++) {
        const v = order[r] as number;
        if (r > 0 && cumBefore / total > opts.topP) keep[v] = 0;
        cumBefore += Math.exp((probs[v] as number) - max);
      }
    }
    if (opts.topK > 0 && opts.topK < vocab) {
      // Dream's top_k_logits: drop tokens strictly below the k-th largest logit.
      const kth = probs[order[opts.topK - 1] as number] as number;
      for (let v = 0; v < vocab; v++) if ((probs[v] as number) < kth) keep[v] = 0;
    }
  }
  let sum = 0;
  for (let v = 0; v < vocab; v++) {
    const p = keep[v] ? Math.exp((probs[v] as number) - max) : 0;
    probs[v] = p;
    sum += p;
  }
  for (let v = 0; v < vocab; v++) probs[v] = (probs[v] as number) / sum;
}

/** A logits row's softmax at temperature 1, no filters: its argmax (lowest id on ties), max logit and sum exp(x - max). */
export interface SoftmaxNorm {
  argmax: number;
  max: number;
  total: number;
}

/** One pass for the max, one for the normalizer; any token's probability then costs one exp (softmaxProb). */
export function softmaxNorm(logits: ArrayLike<number>, offset: number, vocab: number): SoftmaxNorm {
  let argmax = 0;
  let max = logits[offset] as number;
  for (let v = 1; v < vocab; v++) {
    const x = logits[offset + v] as number;
    if (x > max) {
      max = x;
      argmax = v;
    }
  }
  let total = 0;
  for (let v = 0; v < vocab; v++) total += Math.exp((logits[offset + v] as number) - max);
  return { argmax, max, total };
}

/** Softmax probability of `token` in the row `norm` was computed over. */
export function softmaxProb(logits: ArrayLike<number>, offset: number, norm: SoftmaxNorm, token: number): number {
  return Math.exp((logits[offset + token] as number) - norm.max) / norm.total;
}

/** ln of softmaxProb, without the exp: finite however unlikely the token (an exp would underflow to 0). */
export function softmaxLogProb(logits: ArrayLike<number>, offset: number, norm: SoftmaxNorm, token: number): number {
  return (logits[offset + token] as number) - norm.max - Math.log(norm.total);
}

/**
 * Greedy decoding without filters needs only the argmax and its softmax probability
 * (1 / sum exp(x - max)); same result as samplingProbs + drawToken at temperature 0.
 */
export function greedyTokenProb(logits: ArrayLike<number>, offset: number, vocab: number): { token: number; prob: number } {
  const n = softmaxNorm(logits, offset, vocab);
  return { token: n.argmax, prob: 1 / n.total };
}

/** Token for this row: inverse-CDF draw with `u` when temperature > 0, else argmax (lowest id on ties). */
export function drawToken(probs: Float64Array, vocab: number, temperature: number, u: number): number {
  if (temperature > 0) {
    let acc = 0;
    let last = 0;
    for (let v = 0; v < vocab; v++) {
      const p = probs[v] as number;
      if (p <= 0) continue;
      last = v;
      acc += p;
      if (u < acc) return v;
    }
    return last;
  }
  let best = 0;
  for (let v = 1; v < vocab; v++) if ((probs[v] as number) > (probs[best] as number)) best = v;
  return best;
}

/**
 * Confidence that orders unmasking: probability of the chosen token (origin, maskgit_plus),
 * top-1 minus top-2 probability (topk_margin), or negative entropy (entropy).
 */
export function algConfidence(alg: UnmaskAlg, probs: Float64Array, vocab: number, token: number): number {
  if (alg === "topk_margin") {
    let p1 = 0;
    let p2 = 0;
    for (let v = 0; v < vocab; v++) {
      const p = probs[v] as number;
      if (p > p1) {
        p2 = p1;
        p1 = p;
      } else if (p > p2) p2 = p;
    }
    return p1 - p2;
  }
  if (alg === "entropy") {
    let s = 0;
    for (let v = 0; v < vocab; v++) {
      const p = probs[v] as number;
      s += p * Math.log(p + ENTROPY_EPS);
    }
    return s;
  }
  return probs[token] as number;
}
