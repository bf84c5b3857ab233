/**
 * Parameters of infill decoding (fill the middle between a prefix and a suffix), resolved and
 * checked here so the gRPC service, the CLI and the bench agree. Bad values throw
 * InvalidDecodeParamsError naming the field (gRPC INVALID_ARGUMENT).
 */
import { InvalidDecodeParamsError, resolveDecodeParams, type CacheMode, type CacheRefresh, type CommitRule, type DecodeParamsInput } from "./decode-params.js";
import type { UnmaskAlg } from "./sampling.js";

/** DreamOn's evaluation: the middle starts as 4 masks and may grow to 64 tokens. */
export const DEFAULT_VARIABLE_INITIAL_LENGTH = 4;
export const DEFAULT_INFILL_MAX_LENGTH = 64;
/** Fixed-length mode without an initial_length: this many masks. */
export const DEFAULT_FIXED_INITIAL_LENGTH = 16;
/** Largest length-search radius (candidate lengths on each side of the variable decode's). */
export const MAX_LENGTH_SEARCH = 16;
/** How length-search candidates are screened before their scores rank them. */
export type SyntaxCheck = "python" | "none";
export const SYNTAX_CHECKS: readonly SyntaxCheck[] = ["python", "none"];
/** Largest middle a request may ask for (either length). */
export const MAX_INFILL_LENGTH = 1024;
/**
 * Fixed-length infilling's KV cache unless the caller names one (as generation's default).
 * Measured on the base model, 200 held-out rows at the true length (`bench infill --model
 * models/tiny-coder --modes oracle,fixed_short,fixed_long --cache none|dual`): pass@1 62.5 % ->
 * 62.0 %, decoding 1.8x faster. Variable length always runs uncached.
 */
export const DEFAULT_INFILL_CACHE: CacheMode = "dual";
/** DreamOn's unmasking order for infilling. */
export const DEFAULT_INFILL_ALG: UnmaskAlg = "entropy";

/** Fully resolved infill decoding parameters (one request; every sample shares them). */
export interface InfillParams {
  /** true = DreamOn expand/delete; false = exactly `initial_length` masks. */
  variable: boolean;
  alg: UnmaskAlg;
  alg_temp: number;
  temperature: number;
  top_p: number;
  top_k: number;
  /**
   * Fixed-length mode only (variable length commits one token per step, as DreamOn):
   * Fast-dLLM threshold / factor rules or an even step schedule, within semi-AR blocks.
   */
  commit: CommitRule;
  threshold: number;
  factor: number;
  /**
   * Variable length: 1 = DreamOn, one token per step. Below 1 (a caller's explicit `threshold`),
   * Fast-dLLM's rule for ordinary tokens: every masked position whose token has probability >=
   * it is committed in the same step, with at most one expand/delete edit per step (the most
   * confident), applied after the ordinary tokens.
   */
  variable_threshold: number;
  /**
   * Variable length: 0 = DreamOn's order. Above 0, a length cut: at each step, the leftmost masked
   * middle position whose EOS probability is at least this is committed as EOS before anything
   * else (DreamOn's delete rule then drops it and every mask to its right). DreamOn's entropy
   * order commits the surest EOS first, at the far end of a long canvas, where deleting it
   * removes one position; the middle's tokens are then written for a canvas still too long.
   */
  eos_cut: number;
  /**
   * Variable length: 0 = DreamOn's order. Above 0, when no EOS cut applies, the masked position
   * with the highest `<|expand|>` probability is expanded before anything else if that probability
   * is at least this (while the window and budget allow): the middle grows to the length the model
   * asks for before its tokens are written, where DreamOn's order writes the surer ordinary tokens
   * first and a short start (4 masks) is filled in before it is grown.
   */
  expand_cut: number;
  /**
   * Variable length: 0 = off. Above 0 (W), a length search after the expand/delete decode: the
   * middle is also decoded at each fixed length within W of the length that decode reached, and
   * every candidate is scored by the model (services/rollout/src/decoding/infill-length-search.ts);
   * the best-scored one is the sample.
   */
  length_search: number;
  /**
   * Length search only: candidates whose whole program is visibly malformed in this language
   * rank after every other (`python`: shared/src/infill/python-shape.ts; `none`: scores alone).
   */
  syntax_check: SyntaxCheck;
  /**
   * Length search only: the KV cache of its fixed-length decodes (dual; none where the model
   * serves no cache, set by the request check).
   */
  search_cache: CacheMode;
  /** Fixed mode, `schedule` rule: steps for the whole middle (clamped to its length). */
  steps: number;
  /** Fixed mode: semi-autoregressive block length over the middle. */
  block_length: number;
  /**
   * Fixed mode: Fast-dLLM's approximate KV cache over the canvas. `prefix` computes from the
   * current block to the end of the suffix and reuses the K/V before it; `dual` computes the
   * block alone and reuses both sides (prefix, later blocks, suffix), refreshed by a full
   * forward when a block starts (`cache_refresh: step`: before every step, exact). Variable
   * length always runs without (every expand or delete moves the suffix).
   */
  cache: CacheMode;
  cache_refresh: CacheRefresh;
  /** Fixed mode: an EOS committed in the middle turns every mask to its right into EOS. */
  eos_fill: boolean;
  /** Token the model writes to grow the middle by one (two masks replace it); -1 = none. */
  expand_id: number;
  /** Token that deletes a middle position (DreamOn: EOS). */
  delete_id: number;
  /** Record per-position commit steps and expand/delete/eos_fill events. */
  trace: boolean;
  seed: number;
}

/** What a caller may set; unset = defaults above (and resolveDecodeParams' for the rest). */
export interface InfillParamsInput extends DecodeParamsInput {
  variable?: boolean;
  /** Variable length's EOS cut (InfillParams.eos_cut); unset or 0 = off. */
  eos_cut?: number;
  /** Variable length's expand cut (InfillParams.expand_cut); unset or 0 = off. */
  expand_cut?: number;
  /** Variable length's length-search radius (InfillParams.length_search); unset = the model's default, else 0. */
  length_search?: number;
  /** InfillParams.syntax_check; unset = python. */
  syntax_check?: string;
  trace?: boolean;
}

export interface InfillModelTokens {
  eosId: number;
  /** The model's `<|expand|>` id; undefined = an ordinary model (fixed length only). */
  expandId?: number;
  /** The model's delete token; undefined = EOS plays delete (DreamOn). */
  deleteId?: number;
  /** The model's variable-length defaults (manifest `infill_decoding`), used where a request leaves a cut unset. */
  defaultCuts?: { eos_cut?: number; expand_cut?: number; length_search?: number };
}

/** Lengths of one item's middle: checked, defaults filled. */
export interface InfillLengths {
  initialLength: number;
  maxLength: number;
}

function fail(field: string, what: string): never {
  throw new InvalidDecodeParamsError(field, `${field} ${what}`);
}

/**
 * Resolves the request-wide parameters. `variable` unset means variable length when the model
 * can expand. Asking for variable length on a model without an expand token is an error
 * naming `variable_length`.
 */
export function resolveInfillParams(input: InfillParamsInput, tokens: InfillModelTokens): InfillParams {
  const canExpand = tokens.expandId !== undefined && tokens.expandId >= 0;
  if (input.variable === true && !canExpand) {
    fail("variable_length", "needs a model with expand support (manifest expand_id); this model can only infill a fixed length");
  }
  const variable = input.variable ?? canExpand;
  const base = resolveDecodeParams({ ...input, alg: input.alg || DEFAULT_INFILL_ALG, cache: input.cache || (variable ? "none" : DEFAULT_INFILL_CACHE) });
  if (variable && base.cache !== "none") {
    fail("cache", `${base.cache} is for fixed-length infilling only (each expand or delete of variable length moves the suffix); use none`);
  }
  const cut = (field: "eos_cut" | "expand_cut"): number => {
    const asked = input[field];
    if (asked === undefined && !variable) return 0;
    const v = asked ?? tokens.defaultCuts?.[field] ?? 0;
    if (!(Number.isFinite(v) && v >= 0 && v <= 1)) fail(field, `must be in [0, 1] (0 = off), got ${v}`);
    if (v > 0 && !variable) fail(field, "applies to variable-length infilling only");
    return v;
  };
  const eosCut = cut("eos_cut");
  const expandCut = cut("expand_cut");
  const lengthSearch = input.length_search ?? (variable ? (tokens.defaultCuts?.length_search ?? 0) : 0);
  if (!(Number.isInteger(lengthSearch) && lengthSearch >= 0 && lengthSearch <= MAX_LENGTH_SEARCH)) {
    fail("length_search", `must be an integer in [0, ${MAX_LENGTH_SEARCH}] (0 = off), got ${lengthSearch}`);
  }
  if (lengthSearch > 0 && !variable) fail("length_search", "applies to variable-length infilling only");
  const syntaxCheck = (input.syntax_check || "python") as SyntaxCheck;
  if (!SYNTAX_CHECKS.includes(syntaxCheck)) fail("syntax_check", `must be one of ${SYNTAX_CHECKS.join(", ")}, got ${JSON.stringify(input.syntax_check)}`);
  if (variable && base.alg === "origin") fail("alg", "origin is not supported with variable length (DreamOn commits by confidence)");
  return {
    variable,
    alg: base.alg,
    alg_temp: base.alg_temp,
    temperature: base.temperature,
    top_p: base.top_p,
    top_k: base.top_k,
    commit: base.commit,
    threshold: base.threshold,
    variable_threshold: input.threshold !== undefined && input.threshold > 0 && input.threshold < 1 ? base.threshold : 1,
    eos_cut: eosCut,
    expand_cut: expandCut,
    length_search: lengthSearch,
    syntax_check: syntaxCheck,
    search_cache: lengthSearch > 0 ? DEFAULT_INFILL_CACHE : "none",
    factor: base.factor,
    // resolveDecodeParams defaults steps to max_new_tokens: only a caller's steps mean anything here.
    steps: input.steps ? base.steps : 0,
    block_length: base.block_length,
    cache: base.cache,
    cache_refresh: base.cache_refresh,
    eos_fill: base.eos_fill,
    expand_id: canExpand ? (tokens.expandId as number) : -1,
    delete_id: tokens.deleteId ?? tokens.eosId,
    trace: input.trace ?? false,
    seed: base.seed,
  };
}

function intOrUndefined(field: string, v: number | null | undefined): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v)) fail(field, "must be an integer");
  return v;
}

/**
 * One item's middle lengths. `field` prefixes the names (e.g. `items[2]`). Fixed length uses
 * exactly initial_length masks (max_length, when given, must not be below it).
 */
export function resolveInfillLengths(
  field: string,
  initial: number | null | undefined,
  max: number | null | undefined,
  variable: boolean,
): InfillLengths {
  const i = intOrUndefined(`${field}.initial_length`, initial);
  const m = intOrUndefined(`${field}.max_length`, max);
  if (i !== undefined && (i < 1 || i > MAX_INFILL_LENGTH)) fail(`${field}.initial_length`, `must be in [1, ${MAX_INFILL_LENGTH}], got ${i}`);
  if (m !== undefined && (m < 1 || m > MAX_INFILL_LENGTH)) fail(`${field}.max_length`, `must be in [1, ${MAX_INFILL_LENGTH}], got ${m}`);
  const initialLength = i ?? (variable ? Math.min(DEFAULT_VARIABLE_INITIAL_LENGTH, m ?? DEFAULT_VARIABLE_INITIAL_LENGTH) : DEFAULT_FIXED_INITIAL_LENGTH);
  const maxLength = m ?? (variable ? Math.max(DEFAULT_INFILL_MAX_LENGTH, initialLength) : initialLength);
  if (maxLength < initialLength) fail(`${field}.max_length`, `must be >= initial_length (${initialLength}), got ${maxLength}`);
  return { initialLength, maxLength };
}
