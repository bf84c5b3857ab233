// Decoding defaults and value lists that more than one service applies, named once so the rollout
// worker (a bare Generate request), the api (a job spec) and the learner (base-training evals) agree.

/** Semi-autoregressive block length of the diffusion decoder (Fast-dLLM's block). */
export const DEFAULT_BLOCK_LENGTH = 32;
/** Confidence threshold of parallel decoding: commit every masked token at or above it. */
export const DEFAULT_THRESHOLD = 0.9;
/** Unmasking orders (Dream's `alg`), the values a request or job spec may name. */
export const DECODING_ALGS = ["origin", "maskgit_plus", "topk_margin", "entropy"] as const;
/** KV cache modes of the Fast-dLLM decoder. */
export const DECODING_CACHE_MODES = ["none", "prefix", "dual"] as const;
/** Unmasking order (Dream's `alg`). */
export const DEFAULT_ALG = "maskgit_plus" satisfies (typeof DECODING_ALGS)[number];
/** KV cache of the Fast-dLLM decoder. */
export const DEFAULT_CACHE = "dual" satisfies (typeof DECODING_CACHE_MODES)[number];
/** Bound on sample staleness: one version behind (rollout of step s+1 overlaps training of s). */
export const DEFAULT_MAX_STALENESS = 1;
