/**
 * The seam between decoding and the model: one forward pass under the model I/O contract
 * (docs/HELPERS-CONTEXT.md). The ORT implementation and test fakes both sit behind it.
 */

/** What the decoder needs to know about the model. */
export interface DenoiserSpec {
  vocabSize: number;
  nLayers: number;
  nHeads: number;
  /** K/V heads of the past/present tensors (grouped-query attention). Absent = nHeads. */
  nKvHeads?: number;
  headDim: number;
  maxSeqLen: number;
  maskId: number;
  padId: number;
  eosId: number;
  /**
   * Dream's convention: the logit at position i predicts token i + 1, so position j's
   * distribution is the logit row j - 1 (position 0 uses row 0). Absent = false.
   */
  shiftedLogits?: boolean;
  /**
   * Ids the tokenizer can produce (≤ vocabSize). A checkpoint's vocabulary is often padded past
   * its tokenizer (Qwen/Dream: 152064 rows, 151665 tokens); ids at or above this are never
   * proposed. Absent = vocabSize.
   */
  tokenizerVocabSize?: number;
}

/** Per-layer K and V, each [B, Hkv, S, Dh] row-major (Hkv = nKvHeads ?? nHeads). */
export interface KvTensors {
  keys: Float32Array[];
  values: Float32Array[];
}

export interface ForwardInput {
  batch: number;
  /** T: current tokens per row. */
  length: number;
  /** P: cached keys per row (0 = full forward). */
  pastLength: number;
  /** [B, T] token ids. */
  ids: Int32Array;
  /** [B, T] absolute positions. */
  positions: Int32Array;
  /** [B, P + T], 1 = attend to that key; keys are past then current. */
  attention: Float32Array;
  /** Past K/V [B, H, P, Dh] per layer; absent when P = 0. */
  past?: KvTensors;
  /** Whether the caller needs present K/V (a cache refresh). */
  wantPresent: boolean;
}

export interface ForwardOutput {
  /** [B, T, V] as the model gives them: row j predicts token j, or j + 1 when `spec.shiftedLogits`. */
  logits: Float32Array;
  /** K/V of the T current tokens, [B, H, T, Dh] per layer (when asked for). */
  present?: KvTensors;
}

export interface Denoiser {
  readonly spec: DenoiserSpec;
  forward(input: ForwardInput): Promise<ForwardOutput>;
}

/**
 * The forward's row that holds canvas position p's distribution: p itself, or for a
 * shifted-logits model (Dream) the row before it — Dream's `cat([logits[:, :1], logits[:, :-1]], 1)`.
 */
export function logitRow(spec: DenoiserSpec, p: number): number {
  return spec.shiftedLogits === true ? Math.max(p - 1, 0) : p;
}
