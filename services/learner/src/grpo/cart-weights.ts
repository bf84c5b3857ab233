/**
 * Per-token loss weights of a masked-diffusion loss: the classic 1/t weight of a sample's mask
 * ratio, or CART (context-adaptive token-level noise rescheduling, Dream-Coder).
 *
 * CART weighs a masked position n by how much clean context lies near it:
 *   w_n = Σ_{i unmasked context, i ≠ n} ½·p·(1 − p)^(|n − i| − 1)
 * (a symmetric geometric kernel over the distance; the two sides together sum to at most 1).
 * Positions that are not masked weigh 0. A masked token with clean neighbours is easy and
 * informative; one deep inside a masked run weighs less. The loss is then the weighted mean
 * Σ w·ℓ / Σ w over the masked tokens.
 *
 * Which positions count as context is the caller's choice, following Dream-Coder's code: its SFT
 * trainer counts every unmasked position of the sequence (the prompt included); its RL actor
 * slices the kernel to the response, so only the response's unmasked tokens count.
 */

/** How a masked token's loss is weighted. */
export type LossWeighting = { kind: "inv_t" } | { kind: "cart"; p: number };

/** The names `GrpoParams.loss_weight` and `train-base --loss-weight` take. */
export const LOSS_WEIGHT_NAMES = ["inv_t", "cart"] as const;
export type LossWeightName = (typeof LOSS_WEIGHT_NAMES)[number];

/** CART's geometric decay in Dream-Coder's SFT and RL configs. */
export const DEFAULT_CART_P = 0.1;

export const INV_T_WEIGHTING: Readonly<LossWeighting> = Object.freeze({ kind: "inv_t" });

/** Thrown for a CART input that is out of range or inconsistent; `field` says which input. */
export class LossWeightError extends Error {
  override name = "LossWeightError";
  constructor(
    message: string,
    readonly field: "loss_weight" | "cart_p" | "input" = "input",
  ) {
    super(message);
  }
}

export function checkCartP(p: number): number {
  if (!(Number.isFinite(p) && p > 0 && p < 1)) throw new LossWeightError(`cart_p must be in (0, 1), got ${p}`, "cart_p");
  return p;
}

/**
 * CART weights of a batch, dense [B, T] row-major. `masked[k]` = 1 where position k is masked
 * (the positions that get a weight), `context[k]` = 1 where it is a clean token that counts as
 * context. A position that is both is treated as masked (it weighs, but is not context).
 * O(B·T): two sweeps per row, each carrying Σ (1 − p)^(distance − 1) over the context so far.
 */
export function cartWeights(
  masked: ArrayLike<number>,
  context: ArrayLike<number>,
  batchSize: number,
  seqLen: number,
  p: number,
): Float64Array {
  checkCartP(p);
  const n = batchSize * seqLen;
  if (!Number.isInteger(batchSize) || !Number.isInteger(seqLen) || batchSize < 0 || seqLen < 0)
    throw new LossWeightError(`batchSize and seqLen must be non-negative integers, got ${batchSize}x${seqLen}`);
  if (masked.length !== n) throw new LossWeightError(`masked has ${masked.length} entries, expected ${batchSize}x${seqLen}`);
  if (context.length !== n) throw new LossWeightError(`context has ${context.length} entries, expected ${batchSize}x${seqLen}`);
  const q = 1 - p;
  const half = 0.5 * p;
  const w = new Float64Array(n);
  for (let b = 0; b < batchSize; b++) {
    const start = b * seqLen;
    const end = start + seqLen;
    // Left sweep: acc = Σ_{i < k, context} q^(k − i − 1) when position k is reached.
    let acc = 0;
    for (let k = start; k < end; k++) {
      const isMasked = masked[k] ? 1 : 0;
      if (isMasked) w[k] = acc;
      acc = q * acc + (!isMasked && context[k] ? 1 : 0);
    }
    // Right sweep: the same from the other side; then scale both by ½·p.
    acc = 0;
    for (let k = end - 1; k >= start; k--) {
      const isMasked = masked[k] ? 1 : 0;
      if (isMasked) w[k] = half * (w[k]! + acc);
      acc = q * acc + (!isMasked && context[k] ? 1 : 0);
    }
  }
  return w;
}

/** The definition, term by term (O(T²) per row); the tests compare `cartWeights` to it. */
export function cartWeightsNaive(
  masked: ArrayLike<number>,
  context: ArrayLike<number>,
  batchSize: number,
  seqLen: number,
  p: number,
): Float64Array {
  const w = new Float64Array(batchSize * seqLen);
  for (let b = 0; b < batchSize; b++) {
    for (let n = 0; n < seqLen; n++) {
      if (!masked[b * seqLen + n]) continue;
      let s = 0;
      for (let i = 0; i < seqLen; i++) {
        const k = b * seqLen + i;
        if (i === n || masked[k] || !context[k]) continue;
        s += 0.5 * p * (1 - p) ** (Math.abs(n - i) - 1);
      }
      w[b * seqLen + n] = s;
    }
  }
  return w;
}

/**
 * Parses a loss-weight name and CART p (from GrpoParams or CLI flags). `field` prefixes the
 * messages (e.g. `params.` or `--`), so an error names the field the caller exposes.
 */
export function parseLossWeighting(
  name: string | null | undefined,
  cartP: number | null | undefined,
  fields: { lossWeight: string; cartP: string },
  dflt: Readonly<LossWeighting> = INV_T_WEIGHTING,
): LossWeighting {
  const kind = name === undefined || name === null || name === "" ? dflt.kind : name;
  if (kind !== "inv_t" && kind !== "cart")
    throw new LossWeightError(`${fields.lossWeight} must be one of ${LOSS_WEIGHT_NAMES.join(", ")}, got "${name}"`, "loss_weight");
  if (kind === "inv_t") {
    if (cartP !== undefined && cartP !== null)
      throw new LossWeightError(`${fields.cartP} applies only to loss_weight cart (loss weight here: inv_t), got ${cartP}`, "cart_p");
    return { kind };
  }
  const p = cartP ?? (dflt.kind === "cart" ? dflt.p : DEFAULT_CART_P);
  if (!(Number.isFinite(p) && p > 0 && p < 1)) throw new LossWeightError(`${fields.cartP} must be in (0, 1), got ${p}`, "cart_p");
  return { kind, p };
}
