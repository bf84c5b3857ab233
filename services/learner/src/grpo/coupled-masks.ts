import { createRng, deriveSeed } from "./seeded-rng.js";
import { DEFAULT_MASK_T_MAX, DEFAULT_MASK_T_MIN, GrpoConfigError, type MaskWeightPlacement } from "./grpo-config.js";

/**
 * Coupled complementary masks for a masked-diffusion policy (DiffuCoder / Dream-Coder): per
 * sample a mask ratio t ~ U(tMin, tMax) and per position u ~ U(0, 1); pass 1 masks the response
 * tokens with u < t (weight 1/t), pass 2 those with u ≥ t (weight 1/(1−t)), so every response
 * token is scored exactly once per pair. Everything follows from one seed per sample, which is
 * stored so the old- and new-policy passes see identical masks.
 */

export interface CoupledMaskOptions {
  /** @defaultValue DEFAULT_MASK_T_MIN */
  tMin?: number;
  /** @defaultValue DEFAULT_MASK_T_MAX */
  tMax?: number;
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
  return { batchSize, seqLen, seeds: Uint32Array.from(seeds), t, masks: [m1, m2], weights: [w1, w2] };
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
 */
export function maskPairCoefficients(
  pair: MaskPair,
  placement: MaskWeightPlacement,
): { logRatioCoef: [Float32Array, Float32Array]; tokenWeight: Float32Array } {
  const n = pair.batchSize * pair.seqLen;
  const c1 = new Float32Array(n);
  const c2 = new Float32Array(n);
  const tw = new Float32Array(n);
  for (let b = 0; b < pair.batchSize; b++) {
    const w1 = pair.weights[0][b]!;
    const w2 = pair.weights[1][b]!;
    for (let j = b * pair.seqLen; j < (b + 1) * pair.seqLen; j++) {
      if (pair.masks[0][j]) {
        c1[j] = placement === "ratio" ? w1 : 1;
        tw[j] = placement === "ratio" ? 1 : w1 / 2;
      } else if (pair.masks[1][j]) {
        c2[j] = placement === "ratio" ? w2 : 1;
        tw[j] = placement === "ratio" ? 1 : w2 / 2;
      }
    }
  }
  return { logRatioCoef: [c1, c2], tokenWeight: tw };
}
