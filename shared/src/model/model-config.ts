/**
 * Size of the policy transformer. Everything else about the graph (op choice, names, layout) is
 * fixed by graph-builder.ts, so this plus the weights fully describes a model.
 */
export interface PolicyModelConfig {
  vocabSize: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  /** Hidden width of the feed-forward block. */
  ffDim: number;
  /** Longest prompt + response the model is meant for (RoPE itself has no table limit). */
  maxSeqLen: number;
  /** RMSNorm epsilon. @defaultValue 1e-5 */
  normEps: number;
  /**
   * The LM head is the transposed token embedding (no separate `lm_head` tensor). Tying gives a
   * small model a direct path to copy a prompt token into the response (constants in code tasks).
   * @defaultValue false
   */
  tiedEmbeddings?: boolean;
  /**
   * Grouped-query attention: number of K/V heads (divides nHeads; query head h reads K/V head
   * ⌊h / (nHeads / nKvHeads)⌋, as Hugging Face's `repeat_kv`). past/present K/V in the I/O
   * contract carry the nKvHeads heads, not nHeads. @defaultValue nHeads
   */
  nKvHeads?: number;
  /** Per-head width; Hugging Face configs may state it (`head_dim`). @defaultValue dModel / nHeads */
  headDim?: number;
  /** Bias vectors on the q/k/v projections (Qwen2 / Dream). @defaultValue false */
  qkvBias?: boolean;
  /**
   * Feed-forward block: `gelu_sigmoid` = w_down(x·σ(1.702x)) of w_up (the tiny model), `swiglu` =
   * w_down(silu(x·w_gate) ⊙ x·w_up) (Llama / Qwen2 / Dream / LLaDA). @defaultValue "gelu_sigmoid"
   */
  mlp?: MlpKind;
  /** RoPE base frequency. @defaultValue 10000 */
  ropeTheta?: number;
  /**
   * Token embedding: `onehot` = one-hot MatMul (no Gather: the learner's gradient needs no scatter;
   * fine for a few hundred ids), `gather` = ONNX `Gather` (vocab-sized tables such as Qwen's 151k).
   * @defaultValue "onehot"
   */
  embedding?: EmbeddingKind;
}

export type MlpKind = "gelu_sigmoid" | "swiglu";
export type EmbeddingKind = "onehot" | "gather";
export const DEFAULT_ROPE_THETA = 10000;

export const DEFAULT_NORM_EPS = 1e-5;

/**
 * The shipped base model (≈0.50 M params with the 565-token toy vocab, LM head tied to the
 * embedding). d 96 rather than 128: base training is compute-bound on 2 shared cores, and the
 * smaller model learns more per second. max_seq_len 320 lets a prompt take 256 new tokens (the
 * decode benchmark's length); training sequences are shorter (prompt + a 64-token response
 * budget), and RoPE needs no position table.
 */
export const TINY_CONFIG: Omit<PolicyModelConfig, "vocabSize"> = {
  dModel: 96,
  nLayers: 4,
  nHeads: 4,
  ffDim: 384,
  maxSeqLen: 320,
  normEps: DEFAULT_NORM_EPS,
  tiedEmbeddings: true,
};

/** A model small enough for CI to train end to end in seconds. */
export const CI_CONFIG: Omit<PolicyModelConfig, "vocabSize"> = {
  dModel: 32,
  nLayers: 2,
  nHeads: 2,
  ffDim: 64,
  maxSeqLen: 128,
  normEps: DEFAULT_NORM_EPS,
};

export function headDim(config: PolicyModelConfig): number {
  return config.headDim ?? config.dModel / config.nHeads;
}

/** K/V heads (= nHeads without grouped-query attention). */
export function kvHeads(config: PolicyModelConfig): number {
  return config.nKvHeads ?? config.nHeads;
}

/** Throws a message naming the bad field; returns the config for chaining. */
export function validateModelConfig(config: PolicyModelConfig): PolicyModelConfig {
  const ints = ["vocabSize", "dModel", "nLayers", "nHeads", "ffDim", "maxSeqLen"] as const;
  for (const key of ints) {
    const v = config[key];
    if (!Number.isInteger(v) || v <= 0) throw new Error(`model config: ${key} must be a positive integer, got ${v}`);
  }
  for (const key of ["nKvHeads", "headDim"] as const) {
    const v = config[key];
    if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new Error(`model config: ${key} must be a positive integer, got ${v}`);
  }
  if (config.headDim === undefined && config.dModel % config.nHeads !== 0) {
    throw new Error(`model config: dModel ${config.dModel} is not divisible by nHeads ${config.nHeads}`);
  }
  if (headDim(config) % 2 !== 0) {
    throw new Error(`model config: head dim ${headDim(config)} must be even for RoPE`);
  }
  if (config.nHeads % kvHeads(config) !== 0) {
    throw new Error(`model config: nHeads ${config.nHeads} is not divisible by nKvHeads ${kvHeads(config)}`);
  }
  if (!(config.normEps > 0)) throw new Error(`model config: normEps must be > 0, got ${config.normEps}`);
  if (config.ropeTheta !== undefined && !(config.ropeTheta > 0)) {
    throw new Error(`model config: ropeTheta must be > 0, got ${config.ropeTheta}`);
  }
  if (config.mlp !== undefined && config.mlp !== "gelu_sigmoid" && config.mlp !== "swiglu") {
    throw new Error(`model config: mlp must be "gelu_sigmoid" or "swiglu", got ${String(config.mlp)}`);
  }
  if (config.embedding !== undefined && config.embedding !== "onehot" && config.embedding !== "gather") {
    throw new Error(`model config: embedding must be "onehot" or "gather", got ${String(config.embedding)}`);
  }
  return config;
}
