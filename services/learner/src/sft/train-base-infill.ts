import type { SeededRandom } from "@rlmesh/shared/model/index";
import type { InfillRow } from "@rlmesh/shared/infill/index";

import type { TokenBatch } from "../model/jax-policy.js";
import type { SftBatch } from "./train-base-data.js";

/**
 * DreamOn's training rows for variable-length infilling (written after DreamOn's public
 * `sft_expand_dataset.py` and `fsdp_sft_expand_trainer.py`):
 *
 * - the response is the middle followed by 0–63 EOS (EOS plays "delete": a decoder turns the
 *   masks after an EOS into EOS and drops them);
 * - each response token is masked with probability t ~ U(0, 1) drawn per example, and every EOS
 *   position is masked;
 * - scanning the middle left to right (stopping at the first EOS), a masked position followed by
 *   a masked position is merged with probability p: its label becomes `<|expand|>` and the second
 *   one is hidden (DreamOn gives it attention 0 and no position; here it is left out of the
 *   sequence, which for this bidirectional model is the same forward). p = 0.5 · (1 − masked
 *   fraction), except in half the examples (`use_uniform_merge_prob` 0.5 in DreamOn's config)
 *   where p stays 0.5;
 * - the loss is on the visible masked positions, weighted (1 − t); EOS losses are averaged
 *   separately and added, per row, as DreamOn's `weight_eos` branch does over its micro-batch
 *   of one sequence: loss = Σ_rows (Σ_non-EOS (1−t)·ℓ + mean_EOS (1−t)·ℓ) / Σ_rows (N_non-EOS + 1).
 *   (An earlier version averaged the EOS of the whole batch of 16 into ONE token's weight, ~1 %
 *   of the loss: after 39 steps the model labelled 3 % of 32 surplus masks EOS, so a decode
 *   from too many masks never deleted.) `timeWeight: "inv_t"` puts the base model's
 *   1/t (t ~ U(0.05, 1)) in place of (1 − t), everything else equal.
 *
 * Merges chain as in DreamOn's loop: a hidden position may start the next pair, so a run of k + 1
 * masked positions can collapse into ONE visible `<|expand|>` standing for k + 1 tokens (the
 * decoder undoes it by expanding again: `<|expand|>` means "this mask holds two or more tokens").
 * An earlier version stopped chains (each `<|expand|>` stood for exactly two tokens), so training
 * never showed a mask holding three or more tokens, which is what a decode from 4 masks for a
 * 15-token middle starts from.
 */

export interface InfillExample {
  /** Everything before the middle: prompt + opening fence + code prefix. */
  prefixIds: number[];
  /** The true middle. */
  middleIds: number[];
  /** Everything after the middle (code suffix + closing fence). */
  suffixIds: number[];
}

export interface DreamOnOptions {
  maskId: number;
  padId: number;
  eosId: number;
  expandId: number;
  /** EOS padding after the middle is drawn from 0 … maxDelete − 1 (DreamOn's max_delete 64). @defaultValue 64 */
  maxDelete: number;
  /** DreamOn's merge_prob. @defaultValue 0.5 */
  mergeProb: number;
  /** Share of examples whose p stays mergeProb (DreamOn's use_uniform_merge_prob). @defaultValue 0.5 */
  uniformMergeShare: number;
  /** Sequences are cut to this (EOS padding shrinks first). */
  maxSeqLen: number;
  /** Batch sequence length is rounded up to a multiple of this. */
  lengthBucket: number;
  /**
   * Per-example loss weight: `linear` = (1 − t) with t ~ U(0, 1) (DreamOn's `time_reweighting:
   * linear`); `inv_t` = 1/t with t ~ U(tMin, 1), the base model's own masked-diffusion weighting.
   * @defaultValue "linear"
   */
  timeWeight?: DreamOnTimeWeight;
  /**
   * Share of rows built at the exact length instead (the middle alone: no EOS padding, no merges;
   * masked with the same t): the oracle-length canvas, so the fixed-length skill the base has and
   * a decode that reaches the right length are trained in every batch. @defaultValue 0
   */
  exactShare?: number;
  /**
   * Share of (non-exact) rows whose merge COUNT is uniform over 0 … the number of mergeable
   * pairs (adjacent masked middle positions), the pairs then chosen at random, instead of one
   * Bernoulli(p) per pair. Per-pair merging hides about p of a fully masked middle, so a middle
   * squeezed into a few masks (a decode from 4 masks for a 15-token middle: 11 merges of 14
   * pairs, ~2 % of rows at p = 0.5) is rarely trained; a uniform count covers every squeeze
   * alike. @defaultValue 0
   */
  uniformCountShare?: number;
  /**
   * Where merges go. `random` (DreamOn): any adjacent masked pair of the middle, the run's first
   * visible position labelled `<|expand|>`. `tail`: each maximal run of masked middle positions
   * loses its LAST m positions (m per run: Binomial(run − 1, p), or uniform over 0 … run − 1 in a
   * uniform-count row), and the run's last visible position is labelled `<|expand|>`: a run of k
   * masks standing for n > k tokens reads as its first k − 1 tokens, then one mask for the rest,
   * so every label but the run's last is an exact token (the decoder's rule is unchanged: an
   * `<|expand|>` becomes two masks in place). @defaultValue "random"
   */
  mergePlacement?: MergePlacement;
}

export type MergePlacement = "random" | "tail";

export type DreamOnTimeWeight = "linear" | "inv_t";
/** Lower bound of t under `inv_t` (so 1/t stays bounded; the base's DEFAULT_T_MIN). */
export const INV_T_MIN = 0.05;

export const DREAMON_DEFAULTS = { maxDelete: 64, mergeProb: 0.5, uniformMergeShare: 0.5 } as const;

/** What one training row holds (response part only; the prefix and suffix are unmasked context). */
export interface DreamOnRow {
  /** Visible response tokens as the model sees them (MASK where masked). */
  inputIds: number[];
  /** The label of each visible response position (the token, or `<|expand|>` for a merged run). */
  targets: number[];
  /** Per visible response position: 0 = no loss, 1 = masked token (or expand), 2 = masked EOS. */
  lossKind: (0 | 1 | 2)[];
  /** Indices (in the middle + EOS response, before hiding) of the hidden second positions. */
  hidden: number[];
  /** The per-example noise level t. */
  t: number;
  /** The merge probability used. */
  p: number;
  /** EOS tokens appended after the middle. */
  eosCount: number;
}

/** Builds one DreamOn row for an example (pure given the rng state). */
export function dreamOnRow(ex: InfillExample, rng: SeededRandom, opts: DreamOnOptions): DreamOnRow {
  // Drawn only when asked for, so runs without exact rows keep their random streams.
  const exact = (opts.exactShare ?? 0) > 0 && rng.next() < opts.exactShare!;
  const room = opts.maxSeqLen - ex.prefixIds.length - ex.middleIds.length - ex.suffixIds.length;
  const eosCount = !exact && room > 0 && opts.maxDelete > 0 ? rng.int(Math.min(opts.maxDelete, room)) : 0;
  const resp = [...ex.middleIds, ...new Array<number>(eosCount).fill(opts.eosId)];
  const L = resp.length;
  const t = opts.timeWeight === "inv_t" ? INV_T_MIN + (1 - INV_T_MIN) * rng.next() : rng.next();
  const randomMask = resp.map(() => rng.next() < t);
  const numMasked = randomMask.filter(Boolean).length;
  const masked = resp.map((tok, i) => randomMask[i]! || tok === opts.eosId);
  const drawnP = rng.next() < opts.uniformMergeShare ? opts.mergeProb : opts.mergeProb * (1 - numMasked / Math.max(1, L));
  const p = exact ? 0 : drawnP;
  const uniformCount = !exact && (opts.uniformCountShare ?? 0) > 0 && rng.next() < opts.uniformCountShare!;
  const labels = [...resp];
  const hiddenSet = new Set<number>();
  if (opts.mergePlacement === "tail") {
    // Runs of masked middle positions (EOS padding excluded), each squeezed at its end.
    const midLen = ex.middleIds.length;
    for (let i = 0; i < midLen; ) {
      if (!masked[i]) {
        i++;
        continue;
      }
      let j = i;
      while (j + 1 < midLen && masked[j + 1]) j++;
      const run = j - i + 1;
      let m = 0;
      if (uniformCount) m = rng.int(run);
      else for (let k = 0; k < run - 1; k++) if (rng.next() < p) m++;
      for (let k = run - m; k < run; k++) hiddenSet.add(i + k);
      if (m > 0) labels[i + run - m - 1] = opts.expandId;
      i = j + 1;
    }
  } else if (uniformCount) {
    // The pairs (i, i + 1) the per-pair loop below could merge; a uniform number of them, at random.
    const pairs: number[] = [];
    for (let i = 0; i < L - 1 && resp[i] !== opts.eosId; i++) if (masked[i] && masked[i + 1]) pairs.push(i);
    const m = rng.int(pairs.length + 1);
    for (let k = 0; k < m; k++) {
      const j = k + rng.int(pairs.length - k);
      [pairs[k], pairs[j]] = [pairs[j]!, pairs[k]!];
      hiddenSet.add(pairs[k]! + 1);
    }
  }
  // The visible position a run of merged masks collapses into (its label is `<|expand|>`).
  let anchor = -1;
  for (let i = 0; i < L - 1 && opts.mergePlacement !== "tail"; i++) {
    if (resp[i] === opts.eosId) break;
    if (!hiddenSet.has(i)) anchor = i;
    if (uniformCount) {
      if (hiddenSet.has(i + 1)) labels[anchor] = opts.expandId;
    } else if (masked[i] && masked[i + 1] && rng.next() < p) {
      labels[anchor] = opts.expandId;
      hiddenSet.add(i + 1);
    }
  }
  const row: DreamOnRow = { inputIds: [], targets: [], lossKind: [], hidden: [...hiddenSet].sort((a, b) => a - b), t, p, eosCount };
  for (let i = 0; i < L; i++) {
    if (hiddenSet.has(i)) continue;
    row.inputIds.push(masked[i] ? opts.maskId : resp[i]!);
    row.targets.push(labels[i]!);
    row.lossKind.push(!masked[i] ? 0 : labels[i] === opts.eosId ? 2 : 1);
  }
  return row;
}

export interface DreamOnBatch extends SftBatch {
  /** Masked non-EOS positions (tokens and expand labels) in the batch. */
  tokenLosses: number;
  /** Masked EOS positions in the batch. */
  eosLosses: number;
  /** Positions labelled `<|expand|>`. */
  expandLabels: number;
  /** Hidden (merged-away) positions. */
  hidden: number;
}

/** One DreamOn training batch: sequence = prefix, visible response, suffix; PAD after (attention 0). */
export function makeDreamOnBatch(examples: readonly InfillExample[], rng: SeededRandom, opts: DreamOnOptions): DreamOnBatch {
  const rows = examples.map((ex) => {
    const r = dreamOnRow(ex, rng, opts);
    // Context that does not fit is cut from the left of the prefix (the prompt's start).
    const keep = Math.max(0, opts.maxSeqLen - r.inputIds.length - ex.suffixIds.length);
    const prefix = ex.prefixIds.length > keep ? ex.prefixIds.slice(ex.prefixIds.length - keep) : ex.prefixIds;
    return { r, prefix, suffix: ex.suffixIds };
  });
  const maxLen = Math.max(...rows.map(({ r, prefix, suffix }) => prefix.length + r.inputIds.length + suffix.length));
  const seqLen = Math.min(Math.max(opts.maxSeqLen, opts.lengthBucket), Math.ceil(maxLen / opts.lengthBucket) * opts.lengthBucket);
  const B = rows.length;
  const inputIds = new Int32Array(B * seqLen).fill(opts.padId);
  const targets = new Int32Array(B * seqLen).fill(opts.padId);
  const positionIds = new Int32Array(B * seqLen);
  const attentionMask = new Float32Array(B * seqLen);
  const kind = new Uint8Array(B * seqLen);
  const weightT = new Float32Array(B);
  let tokenLosses = 0;
  let eosLosses = 0;
  /** Masked EOS positions per row: each row's EOS losses are averaged on their own. */
  const rowEos = new Int32Array(B);
  let expandLabels = 0;
  let hidden = 0;
  rows.forEach(({ r, prefix, suffix }, b) => {
    weightT[b] = opts.timeWeight === "inv_t" ? 1 / r.t : 1 - r.t;
    hidden += r.hidden.length;
    const put = (j: number, input: number, target: number, k: 0 | 1 | 2) => {
      const at = b * seqLen + j;
      inputIds[at] = input;
      targets[at] = target;
      attentionMask[at] = 1;
      kind[at] = k;
    };
    let j = 0;
    for (const tok of prefix) put(j++, tok, tok, 0);
    r.inputIds.forEach((tok, i) => {
      const k = r.lossKind[i]!;
      if (k === 1) tokenLosses++;
      if (k === 2) {
        eosLosses++;
        rowEos[b] = rowEos[b]! + 1;
      }
      if (k === 1 && r.targets[i] === opts.expandId) expandLabels++;
      put(j++, tok, r.targets[i]!, k);
    });
    for (const tok of suffix) put(j++, tok, tok, 0);
    for (let q = 0; q < seqLen; q++) positionIds[b * seqLen + q] = q;
  });
  // Each row's EOS mean counts as one more token of that row (DreamOn's weight_eos over a
  // micro-batch of one sequence): denominator Σ_rows (N_row + [row has EOS]).
  const rowsWithEos = rowEos.reduce((a, e) => a + (e > 0 ? 1 : 0), 0);
  const denom = tokenLosses + rowsWithEos;
  const tokenWeights = new Float32Array(B * seqLen);
  for (let k = 0; k < tokenWeights.length; k++) {
    if (kind[k] === 0) continue;
    const b = Math.floor(k / seqLen);
    const w = weightT[b]! / denom;
    tokenWeights[k] = kind[k] === 1 ? w : w / rowEos[b]!;
  }
  const batch: TokenBatch = { batchSize: B, seqLen, inputIds, positionIds, attentionMask, targets };
  return { batch, tokenWeights, maskedTokens: tokenLosses + eosLosses, tokenLosses, eosLosses, expandLabels, hidden };
}

interface EncodeTokenizer {
  encode(text: string): number[];
}

/**
 * Infilling rows → token ids (prefix = prompt + code before, middle, suffix), each piece encoded on
 * its own, the suffix followed by EOS: the base model ended every answer with EOS, and the
 * rollout's infill canvas is prefix | middle | suffix EOS (DreamOn's evaluation layout,
 * `encode(suffix, add_eos=True)`), so training sees the layout decoding uses.
 */
export function infillExamples(rows: readonly InfillRow[], tokenizer: EncodeTokenizer, eosId: number): InfillExample[] {
  return rows.map((r) => ({ prefixIds: tokenizer.encode(r.prefix), middleIds: tokenizer.encode(r.middle), suffixIds: [...tokenizer.encode(r.suffix), eosId] }));
}

/** The special token DreamOn adds for "this mask stands for two tokens". */
export const EXPAND_TOKEN = "<|expand|>";

/**
 * A tokenizer.json with `<|expand|>` added as a special token right after the largest id (the
 * new embedding row). Returns the JSON and the new token's id; unchanged when it already exists.
 */
export function withExpandToken(tokenizerJson: unknown): { json: unknown; expandId: number; added: boolean } {
  const j = structuredClone(tokenizerJson) as { model: { vocab: Record<string, number> }; added_tokens?: { id: number; content: string }[] };
  const added = j.added_tokens ?? [];
  const existing = added.find((t) => t.content === EXPAND_TOKEN) ?? (j.model.vocab[EXPAND_TOKEN] !== undefined ? { id: j.model.vocab[EXPAND_TOKEN] } : undefined);
  if (existing) return { json: j, expandId: existing.id, added: false };
  const maxId = Math.max(...Object.values(j.model.vocab), ...added.map((t) => t.id));
  const expandId = maxId + 1;
  j.added_tokens = [...added, { id: expandId, content: EXPAND_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true } as { id: number; content: string }];
  return { json: j, expandId, added: true };
}

/**
 * Warm-up of the rows `growVocab` added, before the full fine-tune: `steps` AdamW steps at a
 * constant `lr` in which ONLY the new embedding rows (and an untied head's new columns) move.
 * Measured on the shipped base (16 train-split DreamOn rows per step): the new `<|expand|>` row
 * starts as the MASK row, whose logit the base learned to push down, so an expand label costs
 * ~19 nats; the Adam step of one row is bounded by the LR (3e-4 moves that logit by ~0.03 nat a
 * step), so without this the whole network bends to raise it (the trunk moved 4–6 % per matrix
 * in 150 steps and lost most of the base's fixed-length infilling). 8 steps at 0.1 bring it to
 * ~8–10 nats at no cost to the rest of the model.
 */
export const NEW_ROW_WARMUP = { steps: 8, lr: 0.1 } as const;

/**
 * Zeroes, in place, every gradient except those of the token ids [oldVocab, newVocab):
 * `tok_embedding` [V, d] rows and an untied `lm_head` [d, V] columns. Throws on a layout it
 * does not know, so a renamed tensor cannot silently train the whole model.
 */
export function keepNewVocabGrads(grads: Record<string, { data: Float32Array }>, oldVocab: number, newVocab: number, dModel: number): void {
  if (!(oldVocab > 0 && newVocab > oldVocab)) throw new RangeError(`keepNewVocabGrads: need 0 < oldVocab < newVocab, got ${oldVocab}, ${newVocab}`);
  const emb = grads["tok_embedding"];
  if (!emb || emb.data.length !== newVocab * dModel) throw new Error(`keepNewVocabGrads: tok_embedding gradient has ${emb?.data.length ?? 0} values, expected ${newVocab}×${dModel}`);
  for (const [name, g] of Object.entries(grads)) {
    if (name === "tok_embedding") {
      g.data.fill(0, 0, oldVocab * dModel);
    } else if (name === "lm_head") {
      if (g.data.length !== dModel * newVocab) throw new Error(`keepNewVocabGrads: lm_head gradient has ${g.data.length} values, expected ${dModel}×${newVocab}`);
      for (let r = 0; r < dModel; r++) g.data.fill(0, r * newVocab, r * newVocab + oldVocab);
    } else {
      g.data.fill(0);
    }
  }
}

/**
 * Grows a weight map to `newVocab` rows: `tok_embedding` [V, d] (and an untied `lm_head` [d, V])
 * gain rows (columns) for the new tokens, initialised as a copy of the MASK token's row (the
 * model's "unknown here" embedding) plus small noise, so the new token starts out rare and
 * distinct. Other tensors are shared, not copied.
 */
export function growVocab(
  weights: ReadonlyMap<string, Float32Array>,
  oldVocab: number,
  newVocab: number,
  dModel: number,
  maskId: number,
  rng: SeededRandom,
): Map<string, Float32Array> {
  const out = new Map(weights);
  const emb = weights.get("tok_embedding");
  if (!emb || emb.length !== oldVocab * dModel) throw new Error(`growVocab: tok_embedding has ${emb?.length ?? 0} values, expected ${oldVocab}×${dModel}`);
  const grown = new Float32Array(newVocab * dModel);
  grown.set(emb);
  for (let v = oldVocab; v < newVocab; v++) {
    for (let c = 0; c < dModel; c++) grown[v * dModel + c] = emb[maskId * dModel + c]! + 0.01 * rng.normal();
  }
  out.set("tok_embedding", grown);
  const head = weights.get("lm_head");
  if (head) {
    const g = new Float32Array(dModel * newVocab);
    for (let r = 0; r < dModel; r++) {
      g.set(head.subarray(r * oldVocab, (r + 1) * oldVocab), r * newVocab);
      for (let v = oldVocab; v < newVocab; v++) g[r * newVocab + v] = head[r * oldVocab + maskId]! + 0.01 * rng.normal();
    }
    out.set("lm_head", g);
  }
  return out;
}
