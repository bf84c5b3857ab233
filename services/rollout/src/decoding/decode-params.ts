import { UNMASK_ALGS, type UnmaskAlg } from "./sampling.js";
import {
  DEFAULT_ALG as SHARED_DEFAULT_ALG,
  DEFAULT_BLOCK_LENGTH,
  DEFAULT_CACHE as SHARED_DEFAULT_CACHE,
  DEFAULT_THRESHOLD,
  DECODING_CACHE_MODES,
} from "@rlmesh/shared/decoding-defaults";

/** KV cache of the Fast-dLLM decoder. */
export type CacheMode = (typeof DECODING_CACHE_MODES)[number];
export const CACHE_MODES: readonly CacheMode[] = DECODING_CACHE_MODES;

/**
 * When the approximate cache is recomputed with a full forward: once per block (Fast-dLLM),
 * or before every step (exact, for verification: costs one extra forward per step).
 */
export type CacheRefresh = "block" | "step";

/** How many masked tokens one step commits. */
export type CommitRule = "schedule" | "threshold" | "factor";

/** Defaults, named so callers and docs agree on them. */
export const DEFAULT_MAX_NEW_TOKENS = 128;
export { DEFAULT_BLOCK_LENGTH, DEFAULT_THRESHOLD };
export const DEFAULT_ALG: UnmaskAlg = SHARED_DEFAULT_ALG;
export const DEFAULT_CACHE: CacheMode = SHARED_DEFAULT_CACHE;
export const DEFAULT_TOP_P = 1;
export const MAX_TOKENS_LIMIT = 8192;

/** Fully resolved decoding parameters (names follow Dream / the DecodingParams proto). */
export interface DecodeParams {
  /** Unmasking order for the step schedule. @defaultValue "maskgit_plus" */
  alg: UnmaskAlg;
  /** 0 = deterministic order; > 0 samples the order from softmax(confidence / alg_temp). */
  alg_temp: number;
  /** 0 = argmax. */
  temperature: number;
  /** 1 = off. */
  top_p: number;
  /** 0 = off. */
  top_k: number;
  /** Response length in tokens (positions after the prompt). @defaultValue 128 */
  max_new_tokens: number;
  /** Steps for the whole response under the `schedule` rule (split evenly over blocks). */
  steps: number;
  /** Semi-autoregressive block length. @defaultValue 32 */
  block_length: number;
  commit: CommitRule;
  /** `threshold` rule: commit every masked token with confidence >= threshold (>= 1: one per step). */
  threshold: number;
  /** `factor` rule constant. */
  factor: number;
  cache: CacheMode;
  cache_refresh: CacheRefresh;
  /** Subtracted from PAD/EOS logits, annealed linearly to 0 over the decode. */
  pad_penalty: number;
  /** Base seed; each sample derives its own. */
  seed: number;
  /** Write PAD after the first EOS as soon as it is committed (the sequence can finish early). */
  eos_fill: boolean;
  /**
   * Masked positions after the current block that the model sees (0 = the whole canvas). A
   * model trained on short responses answers a long max_new_tokens as it does a short one
   * (block + lookahead = its trained response length), and a forward costs less.
   */
  lookahead: number;
  /**
   * Record, per response position, the 1-based step that committed its token
   * (DecodedSequence.commitSteps). Off = no bookkeeping at all. @defaultValue false
   */
  trace?: boolean;
}

/** Partial parameters as a caller sends them; zero/undefined numbers mean "default" as in the proto. */
export type DecodeParamsInput = Partial<Omit<DecodeParams, "commit">> & { commit?: CommitRule };

/** Thrown for bad decoding parameters; `field` names the offending one (gRPC INVALID_ARGUMENT). */
export class InvalidDecodeParamsError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "InvalidDecodeParamsError";
  }
}

function fail(field: string, what: string): never {
  throw new InvalidDecodeParamsError(field, `${field} ${what}`);
}

function finite(field: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v)) fail(field, "must be a finite number");
  return v;
}

function int(field: string, v: unknown): number {
  const n = finite(field, v);
  if (!Number.isInteger(n)) fail(field, "must be an integer");
  return n;
}

function given(v: unknown): boolean {
  return v !== undefined && v !== null && v !== 0 && v !== "";
}

/**
 * Validates and fills defaults. Commit rule, unless `commit` is given: `factor` > 0 selects
 * the factor rule, else a given `threshold` the threshold rule, else a given `steps` the step
 * schedule, else threshold 0.9.
 */
export function resolveDecodeParams(input: DecodeParamsInput = {}): DecodeParams {
  const alg = given(input.alg) ? input.alg : DEFAULT_ALG;
  if (!UNMASK_ALGS.includes(alg as UnmaskAlg)) fail("alg", `must be one of ${UNMASK_ALGS.join(", ")}`);
  const cache = given(input.cache) ? input.cache : DEFAULT_CACHE;
  if (!CACHE_MODES.includes(cache as CacheMode)) fail("cache", `must be one of ${CACHE_MODES.join(", ")}`);
  const cacheRefresh = input.cache_refresh ?? "block";
  if (cacheRefresh !== "block" && cacheRefresh !== "step") fail("cache_refresh", "must be block or step");

  const temperature = finite("temperature", input.temperature ?? 0);
  if (temperature < 0) fail("temperature", "must be >= 0");
  const algTemp = finite("alg_temp", input.alg_temp ?? 0);
  if (algTemp < 0) fail("alg_temp", "must be >= 0");
  const topP = given(input.top_p) ? finite("top_p", input.top_p) : DEFAULT_TOP_P;
  if (!(topP > 0 && topP <= 1)) fail("top_p", "must be in (0, 1]");
  const topK = int("top_k", input.top_k ?? 0);
  if (topK < 0) fail("top_k", "must be >= 0");
  const maxNew = given(input.max_new_tokens) ? int("max_new_tokens", input.max_new_tokens) : DEFAULT_MAX_NEW_TOKENS;
  if (maxNew < 1 || maxNew > MAX_TOKENS_LIMIT) fail("max_new_tokens", `must be in [1, ${MAX_TOKENS_LIMIT}]`);
  const blockLength = given(input.block_length) ? int("block_length", input.block_length) : DEFAULT_BLOCK_LENGTH;
  if (blockLength < 1) fail("block_length", "must be >= 1");
  const steps = given(input.steps) ? int("steps", input.steps) : maxNew;
  if (steps < 1) fail("steps", "must be >= 1");
  if (steps > maxNew) fail("steps", `must be <= max_new_tokens (${maxNew})`);
  const threshold = given(input.threshold) ? finite("threshold", input.threshold) : DEFAULT_THRESHOLD;
  if (!(threshold > 0 && threshold <= 1)) fail("threshold", "must be in (0, 1]");
  const factor = finite("factor", input.factor ?? 0);
  if (factor < 0) fail("factor", "must be >= 0");
  const padPenalty = finite("pad_penalty", input.pad_penalty ?? 0);
  if (padPenalty < 0) fail("pad_penalty", "must be >= 0");
  const lookahead = int("lookahead", input.lookahead ?? 0);
  if (lookahead < 0) fail("lookahead", "must be >= 0 (0 = the whole canvas)");
  const seed = int("seed", input.seed ?? 0);
  if (seed < 0 || seed > Number.MAX_SAFE_INTEGER) fail("seed", "must be in [0, 2^53)");

  let commit: CommitRule;
  if (input.commit !== undefined) {
    if (!["schedule", "threshold", "factor"].includes(input.commit)) fail("commit", "must be schedule, threshold or factor");
    commit = input.commit;
  } else if (factor > 0) commit = "factor";
  else if (given(input.threshold)) commit = "threshold";
  else if (given(input.steps)) commit = "schedule";
  else commit = "threshold";
  if (commit === "factor" && factor <= 0) fail("factor", "must be > 0 for the factor rule");

  return {
    alg: alg as UnmaskAlg,
    alg_temp: algTemp,
    temperature,
    top_p: topP,
    top_k: topK,
    max_new_tokens: maxNew,
    steps,
    block_length: blockLength,
    commit,
    threshold,
    factor,
    cache: cache as CacheMode,
    cache_refresh: cacheRefresh,
    pad_penalty: padPenalty,
    seed,
    eos_fill: input.eos_fill ?? true,
    lookahead,
    trace: input.trace === true,
  };
}

/** The four benchmark modes of issue 5. */
export type DecodeMode = "vanilla" | "parallel" | "prefix" | "dual";
export const DECODE_MODES: readonly DecodeMode[] = ["vanilla", "parallel", "prefix", "dual"];

/** Parameters of a benchmark mode: vanilla is one token per step without cache. */
export function decodeModeParams(mode: DecodeMode, base: DecodeParamsInput = {}): DecodeParams {
  const { commit: _c, threshold: _t, cache: _k, steps: _s, factor: _f, ...rest } = base;
  switch (mode) {
    case "vanilla":
      return resolveDecodeParams({ ...rest, commit: "schedule", steps: rest.max_new_tokens || DEFAULT_MAX_NEW_TOKENS, cache: "none" });
    case "parallel":
      return resolveDecodeParams({ ...rest, commit: "threshold", threshold: base.threshold || DEFAULT_THRESHOLD, cache: "none" });
    case "prefix":
      return resolveDecodeParams({ ...rest, commit: "threshold", threshold: base.threshold || DEFAULT_THRESHOLD, cache: "prefix" });
    case "dual":
      return resolveDecodeParams({ ...rest, commit: "threshold", threshold: base.threshold || DEFAULT_THRESHOLD, cache: "dual" });
  }
}
