import { readFile } from "node:fs/promises";

import type { SeededRandom } from "@rlmesh/shared/model/index";

import { cartWeights, type LossWeighting } from "../grpo/cart-weights.js";
import type { TokenBatch } from "../model/jax-policy.js";

/**
 * Masked-diffusion SFT data (Dream/LLaDA style): sequence = prompt ids, then the response
 * (reference code block + EOS), then PAD up to the response budget. Prompt tokens are never
 * masked; each response token is masked with probability t ~ U(tMin, 1) drawn per example and
 * the loss on masked tokens is weighted 1/t. Trailing PAD is randomly truncated (Dream-Coder) so
 * that PAD, the most common token, does not dominate the loss.
 *
 * With `weighting: cart` the 1/t weight is replaced by CART's context-adaptive weight (see
 * grpo/cart-weights.ts) and the loss is the weighted mean Σ w·ℓ / Σ w over the batch's masked
 * tokens. Context follows Dream-Coder's SFT trainer: every clean position of the row counts —
 * the prompt, the unmasked response tokens and the kept trailing PAD (not the bucket padding,
 * which is not part of the row). The masks are the same draws as with 1/t (same rng calls).
 */

export interface SftExample {
  promptIds: number[];
  /** Reference tokens followed by EOS (no PAD). */
  responseIds: number[];
}

export interface SftBatchOptions {
  maskId: number;
  padId: number;
  /** Response positions a generation has (reference + EOS + PAD fill up to this). */
  responseBudget: number;
  /** Lower bound of the per-example mask ratio t, so 1/t stays bounded. @defaultValue DEFAULT_T_MIN */
  tMin: number;
  /** Batch sequence length is rounded up to a multiple of this, so jit compiles few shapes. */
  lengthBucket: number;
  /**
   * Per-vocabulary loss multiplier (indexed by target id), e.g. from {@link numberTokenWeights}; a
   * masked token's weight is multiplied by it. Absent: every token weighs the same.
   */
  targetWeight?: Float32Array;
  /** How a masked token's loss is weighted. @defaultValue 1/t */
  weighting?: LossWeighting;
}

export const DEFAULT_T_MIN = 0.05;
export const DEFAULT_LENGTH_BUCKET = 16;

export interface SftBatch {
  batch: TokenBatch;
  /**
   * 1/t: mask / (t · number of response tokens in the batch); CART: w / Σ w over the batch's
   * masked tokens (× the target weight in both); loss = −Σ tokenWeight·log p.
   */
  tokenWeights: Float32Array;
  maskedTokens: number;
}

interface EncodeTokenizer {
  encode(text: string): number[];
}

/** Rows of a dataset .jsonl (prompt + reference) → token ids; rows without a reference are skipped. */
export async function loadSftExamples(file: string, tokenizer: EncodeTokenizer, eosId: number): Promise<SftExample[]> {
  const text = await readFile(file, "utf8");
  const rows = text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { prompt?: unknown; reference?: unknown });
  return sftExamplesFromRows(rows, tokenizer, eosId);
}

/** Rows (prompt + reference) → token ids; rows without a string prompt and reference are skipped. */
export function sftExamplesFromRows(
  rows: Iterable<{ prompt?: unknown; reference?: unknown }>,
  tokenizer: EncodeTokenizer,
  eosId: number,
): SftExample[] {
  const out: SftExample[] = [];
  for (const row of rows) {
    if (typeof row.prompt !== "string" || typeof row.reference !== "string") continue;
    out.push({ promptIds: encodePrompt(tokenizer, row.prompt), responseIds: [...tokenizer.encode(row.reference), eosId] });
  }
  return out;
}

/** The prompt part of a sequence: the prompt text's ids, nothing added (the decoder must match). */
export function encodePrompt(tokenizer: EncodeTokenizer, prompt: string): number[] {
  return tokenizer.encode(prompt);
}

/** One training batch from `examples` (already chosen), randomised by `rng`. Pure given the rng state. */
export function makeSftBatch(examples: readonly SftExample[], rng: SeededRandom, opts: SftBatchOptions): SftBatch {
  const rows = examples.map((ex) => {
    const resp = ex.responseIds.slice(0, opts.responseBudget);
    const padRoom = opts.responseBudget - resp.length;
    // Keep a uniform number of trailing PADs in [0, padRoom].
    const keepPad = rng.int(padRoom + 1);
    const response = [...resp, ...new Array<number>(keepPad).fill(opts.padId)];
    return { prompt: ex.promptIds, response };
  });
  const maxLen = Math.max(...rows.map((r) => r.prompt.length + r.response.length));
  const seqLen = Math.ceil(maxLen / opts.lengthBucket) * opts.lengthBucket;
  const B = rows.length;
  const inputIds = new Int32Array(B * seqLen).fill(opts.padId);
  const targets = new Int32Array(B * seqLen).fill(opts.padId);
  const positionIds = new Int32Array(B * seqLen);
  const attentionMask = new Float32Array(B * seqLen);
  const mask = new Float32Array(B * seqLen);
  const invT = new Float32Array(B);
  let responseTokens = 0;
  let maskedTokens = 0;
  rows.forEach((r, b) => {
    const t = opts.tMin + (1 - opts.tMin) * rng.next();
    invT[b] = 1 / t;
    const seq = [...r.prompt, ...r.response];
    let anyMasked = false;
    for (let j = 0; j < seqLen; j++) {
      const k = b * seqLen + j;
      positionIds[k] = j;
      if (j >= seq.length) continue;
      attentionMask[k] = 1;
      inputIds[k] = targets[k] = seq[j]!;
      if (j >= r.prompt.length && rng.next() < t) {
        inputIds[k] = opts.maskId;
        mask[k] = 1;
        anyMasked = true;
      }
    }
    // A draw that masks nothing teaches nothing; mask one response token instead.
    if (!anyMasked && r.response.length > 0) {
      const k = b * seqLen + r.prompt.length + rng.int(r.response.length);
      inputIds[k] = opts.maskId;
      mask[k] = 1;
    }
    responseTokens += r.response.length;
  });
  const tokenWeights = new Float32Array(B * seqLen);
  const weighting = opts.weighting ?? { kind: "inv_t" };
  let cart: Float64Array | null = null;
  let cartSum = 0;
  if (weighting.kind === "cart") {
    const context = new Uint8Array(B * seqLen);
    for (let k = 0; k < context.length; k++) context[k] = attentionMask[k] && !mask[k] ? 1 : 0;
    cart = cartWeights(mask, context, B, seqLen, weighting.p);
    for (const w of cart) cartSum += w;
  }
  for (let k = 0; k < tokenWeights.length; k++) {
    if (mask[k] === 0) continue;
    const boost = opts.targetWeight?.[targets[k]!] ?? 1;
    // A batch whose masked tokens have no context at all has Σ w = 0: it contributes no loss.
    tokenWeights[k] = cart ? (cartSum > 0 ? (boost * cart[k]!) / cartSum : 0) : (boost * invT[Math.floor(k / seqLen)]!) / responseTokens;
    maskedTokens++;
  }
  return { batch: { batchSize: B, seqLen, inputIds, positionIds, attentionMask, targets }, tokenWeights, maskedTokens };
}

interface DecodeTokenizer {
  vocabSize: number;
  decode(ids: readonly number[], o?: { skipSpecial?: boolean }): string;
}

/** Whether a token's text is a whole number, with or without its leading space (`" 12"`, `"3"`). */
export function isNumberToken(text: string): boolean {
  return /^ ?\p{N}+$/u.test(text);
}

/**
 * Loss multipliers that weigh number tokens `weight` times the rest. The toy tasks' constants are
 * copied from the prompt; they are a few percent of the response tokens, so under a flat loss a
 * small model learns the code around them long before it learns to copy them.
 */
export function numberTokenWeights(tokenizer: DecodeTokenizer, weight: number): Float32Array {
  const out = new Float32Array(tokenizer.vocabSize).fill(1);
  for (let id = 0; id < tokenizer.vocabSize; id++) if (isNumberToken(tokenizer.decode([id], { skipSpecial: true }))) out[id] = weight;
  return out;
}
