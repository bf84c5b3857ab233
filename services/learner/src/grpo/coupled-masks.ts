import { createRng, deriveSeed } from "./seeded-rng.js";
import { cartWeights, checkCartP, type LossWeighting } from "./cart-weights.js";
import { DEFAULT_MASK_T_MAX, DEFAULT_MASK_T_MIN, GrpoConfigError, type LossAggregation, type MaskWeightPlacement } from "./grpo-config.js";

/**
 * Coupled complementary masks for a masked-diffusion policy (DiffuCoder / Dream-Coder): per
 * sample a mask ratio t ~ U(tMin, tMax) and per position u ~ U(0, 1); pass 1 masks the response
 * tokens with u < t (weight 1/t), pass 2 those with u ≥ t (weight 1/(1−t)), so every response
 * token is scored exactly once per pair. Everything follows from one seed per sample, which is
 * stored so the old- and new-policy passes see identical masks.
 *
 * With `weighting: cart` the same masks are drawn, but a masked token's weight is CART's
 * context-adaptive one (cart-weights.ts) instead of 1/t or 1/(1−t). Context follows
 * Dream-Coder's RL actor, which slices the CART kernel to the response: the response tokens the
 * pass leaves clean count, the prompt does not.
 */

export interface CoupledMaskOptions {
  /** @defaultValue DEFAULT_MASK_T_MIN */
  tMin?: number;
  /** @defaultValue DEFAULT_MASK_T_MAX */
  tMax?: number;
  /** @defaultValue 1/t (inv_t) */
  weighting?: LossWeighting;
}

/** One coupled mask pair for a whole batch; masks are dense [B, T] row-major, 1 = masked. */
export interface MaskPair {
  batchSize: number;
  seqLen: number;
  /** The seed each sample's t and u were drawn from. */
  seeds: Uint32Array;
  /** Per-sample mask ratio t. */
  t: Float64Array;
  masks: [Uint8Array, Uint8Array];
  /** Per-sample weights of pass 1 (1/t) and pass 2 (1/(1−t)). */
  weights: [Float64Array, Float64Array];
  /**
   * CART only: per-token weights of pass 1 and pass 2, dense [B, T] (0 where the pass does not
   * mask); they replace `weights` in the loss coefficients.
   */
  cartWeights?: [Float64Array, Float64Array];
}

function resolveRange(opts: CoupledMaskOptions): [number, number] {
  const tMin = opts.tMin ?? DEFAULT_MASK_T_MIN;
  const tMax = opts.tMax ?? DEFAULT_MASK_T_MAX;
  if (!(tMin > 0 && tMin <= tMax && tMax < 1)) {
    throw new GrpoConfigError(`mask t range must satisfy 0 < tMin <= tMax < 1, got [${tMin}, ${tMax}]`);
  }
  return [tMin, tMax];
}

/** Seed of sample `sampleIndex` in mask epoch `maskEpoch` of a step whose base seed is `baseSeed`. */
export function maskSeed(baseSeed: number, sampleIndex: number, maskEpoch: number): number {
  return deriveSeed(baseSeed, sampleIndex, maskEpoch);
}

/** Rebuilds a mask pair from stored per-sample seeds (bit-identical for the same inputs). */
export function maskPairFromSeeds(
  seeds: Uint32Array,
  responseMask: ArrayLike<number>,
  seqLen: number,
  opts: CoupledMaskOptions = {},
): MaskPair {
  const [tMin, tMax] = resolveRange(opts);
  if (opts.weighting?.kind === "cart") checkCartP(opts.weighting.p);
  const batchSize = seeds.length;
  if (responseMask.length !== batchSize * seqLen) {
    throw new RangeError(`responseMask has ${responseMask.length} entries, expected ${batchSize}x${seqLen}`);
  }
  const t = new Float64Array(batchSize);
  const m1 = new Uint8Array(batchSize * seqLen);
  const m2 = new Uint8Array(batchSize * seqLen);
  const w1 = new Float64Array(batchSize);
  const w2 = new Float64Array(batchSize);
  for (let b = 0; b < batchSize; b++) {
    const rng = createRng(seeds[b]!);
    const tb = tMin + (tMax - tMin) * rng.nextFloat();
    t[b] = tb;
    w1[b] = 1 / tb;
    w2[b] = 1 / (1 - tb);
    // u is drawn for every position (not only response ones) so a position's u depends only on
    // the seed and its index, never on the lengths of other parts of the row.
    for (let j = b * seqLen; j < (b + 1) * seqLen; j++) {
      const u = rng.nextFloat();
      if (!responseMask[j]) continue;
      if (u < tb) m1[j] = 1;
      else m2[j] = 1;
    }
  }
  const pair: MaskPair = { batchSize, seqLen, seeds: Uint32Array.from(seeds), t, masks: [m1, m2], weights: [w1, w2] };
  if (opts.weighting?.kind === "cart") {
    // The masks are complementary over the response: pass 1's clean response tokens are
    // exactly pass 2's masked ones and vice versa.
    const p = opts.weighting.p;
    pair.cartWeights = [cartWeights(m1, m2, batchSize, seqLen, p), cartWeights(m2, m1, batchSize, seqLen, p)];
  }
  return pair;
}

/** `maskEpochs` independent mask pairs for a batch, seeded from `baseSeed`. */
export function drawMaskPairs(
  baseSeed: number,
  responseMask: ArrayLike<number>,
  batchSize: number,
  seqLen: number,
  maskEpochs: number,
  opts: CoupledMaskOptions = {},
): MaskPair[] {
  if (!Number.isInteger(maskEpochs) || maskEpochs < 1)
    throw new GrpoConfigError(`maskEpochs must be a positive integer, got ${maskEpochs}`);
  const pairs: MaskPair[] = [];
  for (let e = 0; e < maskEpochs; e++) {
    const seeds = new Uint32Array(batchSize);
    for (let b = 0; b < batchSize; b++) seeds[b] = maskSeed(baseSeed, b, e);
    pairs.push(maskPairFromSeeds(seeds, responseMask, seqLen, opts));
  }
  return pairs;
}

/** The model input of one pass: the sampled tokens with the pass's masked positions set to MASK. */
export function maskedInputIds(tokens: ArrayLike<number>, mask: ArrayLike<number>, maskId: number): Int32Array {
  if (tokens.length !== mask.length) throw new RangeError(`tokens (${tokens.length}) and mask (${mask.length}) differ in length`);
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < out.length; i++) out[i] = mask[i] ? maskId : tokens[i]!;
  return out;
}

/**
 * Dense per-token coefficients of a pair for the loss:
 * log-ratio_j = Σ_k logRatioCoef_k[j]·(log p_new,k[j] − log p_old,k[j]) and the token's loss is
 * multiplied by tokenWeight[j]. `ratio` placement: coef = mask·w, tokenWeight = 1 on response
 * tokens; `loss` placement: coef = mask, tokenWeight = w/2 (expected value 1 per token).
 *
 * CART pairs: w is the token's CART weight rescaled so that its mean over the tokens the
 * aggregation averages (the whole batch for token-mean, each row for the sequence means) is 1,
 * so that with the aggregation's 1/N factor the loss is the weighted mean Σ w·ℓ / Σ w
 * (Dream-Coder's RL actor). Placement as above, without the /2 (the mean is already 1).
 * A group whose tokens all lack context (Σ w = 0) weighs 0.
 */
export function maskPairCoefficients(
  pair: MaskPair,
  placement: MaskWeightPlacement,
  aggregation: LossAggregation = "token-mean",
): { logRatioCoef: [Float32Array, Float32Array]; tokenWeight: Float32Array } {
  const n = pair.batchSize * pair.seqLen;
  const c1 = new Float32Array(n);
  const c2 = new Float32Array(n);
  const tw = new Float32Array(n);
  const cart = pair.cartWeights ? normalizedCartWeights(pair, pair.cartWeights, aggregation) : null;
  for (let b = 0; b < pair.batchSize; b++) {
    const w1 = pair.weights[0][b]!;
    const w2 = pair.weights[1][b]!;
    for (let j = b * pair.seqLen; j < (b + 1) * pair.seqLen; j++) {
      if (pair.masks[0][j]) {
        const w = cart ? cart[j]! : w1;
        c1[j] = placement === "ratio" ? w : 1;
        tw[j] = placement === "ratio" ? 1 : cart ? w : w / 2;
      } else if (pair.masks[1][j]) {
        const w = cart ? cart[j]! : w2;
        c2[j] = placement === "ratio" ? w : 1;
        tw[j] = placement === "ratio" ? 1 : cart ? w : w / 2;
      }
    }
  }
  return { logRatioCoef: [c1, c2], tokenWeight: tw };
}

/** CART weights of both passes in one [B, T] array, scaled to mean 1 per aggregation group. */
function normalizedCartWeights(pair: MaskPair, cw: [Float64Array, Float64Array], aggregation: LossAggregation): Float64Array {
  const { batchSize: B, seqLen: T } = pair;
  const w = new Float64Array(B * T);
  const scaleGroup = (from: number, to: number) => {
    let sum = 0;
    let count = 0;
    for (let j = from; j < to; j++) {
      if (pair.masks[0][j]) w[j] = cw[0][j]!;
      else if (pair.masks[1][j]) w[j] = cw[1][j]!;
      else continue;
      sum += w[j]!;
      count++;
    }
    const scale = sum > 0 ? count / sum : 0;
    for (let j = from; j < to; j++) w[j] = w[j]! * scale;
  };
  if (aggregation === "token-mean") scaleGroup(0, B * T);
  else for (let b = 0; b < B; b++) scaleGroup(b * T, (b + 1) * T);
  return w;
}
