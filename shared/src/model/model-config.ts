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
}

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
  return config.dModel / config.nHeads;
}

/** Throws a message naming the bad field; returns the config for chaining. */
export function validateModelConfig(config: PolicyModelConfig): PolicyModelConfig {
  const ints = ["vocabSize", "dModel", "nLayers", "nHeads", "ffDim", "maxSeqLen"] as const;
  for (const key of ints) {
    const v = config[key];
    if (!Number.isInteger(v) || v <= 0) throw new Error(`model config: ${key} must be a positive integer, got ${v}`);
  }
  if (config.dModel % config.nHeads !== 0) {
    throw new Error(`model config: dModel ${config.dModel} is not divisible by nHeads ${config.nHeads}`);
  }
  if ((config.dModel / config.nHeads) % 2 !== 0) {
    throw new Error(`model config: head dim ${config.dModel / config.nHeads} must be even for RoPE`);
  }
  if (!(config.normEps > 0)) throw new Error(`model config: normEps must be > 0, got ${config.normEps}`);
  return config;
}
