/**
 * Infill requests in domain terms: the check of a request before it is queued (items, lengths,
 * the model's expand support) and the samples to decode. The canvas a model sees is
 * encode(prefix) + middle + encode(suffix) + EOS, each piece encoded on its own (for the toy
 * suite's line middles these are the tokens of the whole reference, shared/src/infill), and the
 * EOS after the suffix as in DreamOn's evaluation (`encode(suffix, add_eos=True)`): the shipped
 * base ends every response with EOS, and with it fills 37 of the first 60 held-out oracle-length
 * middles exactly (greedy, one token per step), 14 without it.
 */
import type { ModelManifest } from "@rlmesh/shared/model/index";
import { deriveSeed } from "../decoding/counter-rng.js";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { pythonLooksWellFormed } from "@rlmesh/shared/infill/index";
import type { InfillEditEvent, InfilledSequence, InfillInput } from "../decoding/infill-decoder.js";
import type { LengthCandidate } from "../decoding/infill-length-search.js";
import {
  resolveInfillLengths,
  resolveInfillParams,
  type InfillModelTokens,
  type InfillParams,
  type InfillParamsInput,
} from "../decoding/infill-params.js";

/** Items per Infill request, samples per item (the gRPC limits of Generate). */
export const MAX_INFILL_ITEMS = 4096;
export const MAX_INFILL_SAMPLES_PER_ITEM = 1024;

export interface InfillRequestItem {
  itemId: string;
  /** Text (encoded with the model's tokenizer) or token ids. */
  prefix: string | readonly number[];
  suffix: string | readonly number[];
  /** Unset: 4 masks (variable, DreamOn) or 16 (fixed). */
  initialLength?: number | null;
  /** Unset: 64 (variable) or initial_length (fixed). */
  maxLength?: number | null;
  /** @defaultValue 1 */
  samples?: number;
  /** Seed of this item's samples. @defaultValue derived from params.seed and the item's index */
  seed?: number;
}

export interface InfillRequestOptions {
  /** true = expand/delete, false = fixed length; unset = variable when the model can expand. */
  variable?: boolean;
  params?: InfillParamsInput;
  /** End the canvas with EOS after the suffix (DreamOn's evaluation layout). @defaultValue true */
  suffixEos?: boolean;
}

export interface PreparedInfillSample {
  req: InfillRequestItem;
  prefixIds: number[];
  suffixIds: number[];
  sampleIndex: number;
  input: InfillInput;
}

export interface PreparedInfill {
  params: InfillParams;
  items: PreparedInfillSample[];
}

export interface InfilledSample {
  itemId: string;
  sampleIndex: number;
  prefixTokenIds: number[];
  suffixTokenIds: number[];
  middleTokenIds: number[];
  /** Decoded middle (special tokens skipped); empty without a tokenizer. */
  middleText: string;
  policyVersion: number;
  policyJobId: string;
  nfe: number;
  /** `<|expand|>` commits in this sample's decode (0 in fixed length). */
  expands: number;
  /** Middle positions deleted in this sample's decode (0 in fixed length). */
  deletes: number;
  /** Sum of ln p of the middle's tokens when committed (the decode's confidence in what it wrote). */
  logProb: number;
  /**
   * Length search only: the distinct candidate middles compared, how many the syntax check
   * screened out, and the length the expand/delete decode itself reached.
   */
  lengthSearch?: { candidates: number; screenedOut: number; variableLength: number };
  commitSteps?: number[];
  events?: InfillEditEvent[];
  timings: { queueSeconds: number; decodeSeconds: number };
}

export interface InfillResult {
  samples: InfilledSample[];
  /** The oldest policy any sample used (they differ only across a concurrent swap). */
  policyVersion: number;
  policyJobId: string;
  seconds: number;
  /** Whether the request decoded with expand/delete. */
  variable: boolean;
}

/**
 * The model's infill tokens from its manifest: `expand_id` (a model trained for DreamOn
 * infilling; absent = fixed length only) and `delete_id` (absent = EOS deletes, as DreamOn).
 */
export function infillTokensOf(manifest: ModelManifest): InfillModelTokens {
  return {
    eosId: manifest.eos_id,
    ...(manifest.expand_id !== undefined ? { expandId: manifest.expand_id } : {}),
    ...(manifest.delete_id !== undefined ? { deleteId: manifest.delete_id } : {}),
    ...(manifest.infill_decoding ? { defaultCuts: manifest.infill_decoding } : {}),
  };
}

/** Whether the model declares expand support (ModelInfo.infill_variable_length). */
export function supportsVariableLength(manifest: ModelManifest): boolean {
  return infillTokensOf(manifest).expandId !== undefined;
}

function fail(field: string, what: string): never {
  throw new InvalidDecodeParamsError(field, `${field} ${what}`);
}

/**
 * Resolved parameters and the samples to decode; throws InvalidDecodeParamsError naming the
 * field (items, items[i].prefix, items[i].initial_length, items[i].max_length, variable_length,
 * samples_per_item, or a decoding parameter).
 */
export function prepareInfill(
  manifest: ModelManifest,
  encode: ((text: string) => number[]) | undefined,
  requests: readonly InfillRequestItem[],
  opts: InfillRequestOptions = {},
): PreparedInfill {
  if (requests.length === 0) fail("items", "must not be empty");
  if (requests.length > MAX_INFILL_ITEMS) fail("items", `must hold at most ${MAX_INFILL_ITEMS} items, got ${requests.length}`);
  let params = resolveInfillParams({ ...opts.params, ...(opts.variable !== undefined ? { variable: opts.variable } : {}) }, infillTokensOf(manifest));
  if (params.cache !== "none" && !manifest.cache_support.includes(params.cache)) {
    // A cache the caller named must be served; the default one falls back to full forwards.
    if (opts.params?.cache) fail("cache", `${params.cache} is not supported by model ${manifest.name} (supports: ${manifest.cache_support.join(", ") || "none"})`);
    params = { ...params, cache: "none" };
  }
  if (params.search_cache !== "none" && !manifest.cache_support.includes(params.search_cache)) params = { ...params, search_cache: "none" };
  const items: PreparedInfillSample[] = [];
  requests.forEach((req, i) => {
    const f = `items[${i}]`;
    const samples = req.samples ?? 1;
    if (!Number.isInteger(samples) || samples < 1 || samples > MAX_INFILL_SAMPLES_PER_ITEM) {
      fail("samples_per_item", `must be an integer in [1, ${MAX_INFILL_SAMPLES_PER_ITEM}], got ${samples}`);
    }
    const ids = (part: "prefix" | "suffix"): number[] => {
      const v = req[part];
      if (typeof v === "string") {
        if (!encode) fail(`${f}.${part}`, "is text but this model has no tokenizer: send token ids");
        return v === "" ? [] : encode(v);
      }
      const out = Array.from(v);
      if (out.some((t) => !Number.isInteger(t) || t < 0 || t >= manifest.vocab_size || t === manifest.mask_id)) {
        fail(`${f}.${part}`, "has token ids outside the vocabulary (or MASK)");
      }
      return out;
    };
    const prefixIds = ids("prefix");
    const suffixIds = ids("suffix");
    if (prefixIds.length === 0 && suffixIds.length === 0) fail(`${f}.prefix`, "and suffix are both empty: there is nothing to infill between");
    const { initialLength, maxLength } = resolveInfillLengths(f, req.initialLength, req.maxLength, params.variable);
    const middle = params.variable ? maxLength : initialLength;
    const canvasSuffix = opts.suffixEos === false ? suffixIds : [...suffixIds, manifest.eos_id];
    if (prefixIds.length + middle + canvasSuffix.length > manifest.max_seq_len) {
      fail(
        params.variable ? `${f}.max_length` : `${f}.initial_length`,
        `${middle} + prefix (${prefixIds.length}) + suffix (${canvasSuffix.length}, with its EOS) tokens exceed the model's max_seq_len ${manifest.max_seq_len}`,
      );
    }
    const base = req.seed ?? deriveSeed(params.seed, i);
    for (let g = 0; g < samples; g++) {
      items.push({
        req,
        prefixIds,
        suffixIds,
        sampleIndex: g,
        input: { prefix: prefixIds, suffix: canvasSuffix, initialLength, maxLength, seed: deriveSeed(base, g) },
      });
    }
  });
  return { params, items };
}

/**
 * Length search: the best-scored candidate whose whole program (prefix + middle + suffix) passes
 * the request's syntax check; the best-scored one when none does (the check only ranks).
 */
export function chooseLengthCandidate(
  seq: InfilledSequence,
  params: Pick<InfillParams, "syntax_check">,
  programOf: ((middleIds: number[]) => string) | undefined,
): { chosen: LengthCandidate; screenedOut: number; variableLength: number } | undefined {
  const cands = seq.candidates;
  if (!cands || cands.length === 0) return undefined;
  const variableLength = cands.find((c) => c.variable)?.middleIds.length ?? seq.middleIds.length;
  if (params.syntax_check === "none" || !programOf) return { chosen: cands[0]!, screenedOut: 0, variableLength };
  const ok = cands.filter((c) => pythonLooksWellFormed(programOf(c.middleIds)));
  return { chosen: ok[0] ?? cands[0]!, screenedOut: cands.length - ok.length, variableLength };
}
