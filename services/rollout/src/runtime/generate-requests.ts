/**
 * Generate requests in domain terms: the check of a request before it is queued (parameters with
 * the model's lookahead rule, cache support, samples, prompt ids and length) and the samples to
 * decode; the result types of a Generate.
 */
import type { ModelManifest } from "@rlmesh/shared/model/index";
import { deriveSeed } from "../decoding/counter-rng.js";
import { InvalidDecodeParamsError, resolveDecodeParams, type DecodeParams, type DecodeParamsInput } from "../decoding/decode-params.js";
import type { DecodeInput } from "../decoding/diffusion-decoder.js";
import { withModelLookahead } from "../decoding/model-lookahead.js";

export interface GenerateRequestItem {
  promptId: string;
  /** Text (encoded with the model's tokenizer) or token ids. */
  prompt: string | readonly number[];
  /** @defaultValue 1 */
  samples?: number;
  /** Seed of this prompt's samples. @defaultValue derived from params.seed and the request's index */
  seed?: number;
}

export interface GeneratedSample {
  promptId: string;
  sampleIndex: number;
  promptTokenIds: number[];
  /** Response ids up to and including the first EOS. */
  tokenIds: number[];
  /** Response text without the EOS. */
  text: string;
  finished: boolean;
  policyVersion: number;
  /** The job whose policy generated the sample ("" = the model directory's own weights). */
  policyJobId: string;
  nfe: number;
  timings: { queueSeconds: number; decodeSeconds: number };
  /** Only with params.trace: per token of tokenIds, the 1-based step that committed it. */
  commitSteps?: number[];
}

export interface GenerateResult {
  samples: GeneratedSample[];
  /** The oldest policy any sample used (they differ only across a concurrent swap). */
  policyVersion: number;
  policyJobId: string;
  seconds: number;
}

export interface PreparedSample {
  req: GenerateRequestItem;
  promptIds: number[];
  sampleIndex: number;
  input: DecodeInput;
}

export interface PreparedGenerate {
  params: DecodeParams;
  items: PreparedSample[];
}

/**
 * Resolved parameters and the samples to decode; throws InvalidDecodeParamsError naming the field
 * (a decoding parameter, cache, samples_per_prompt, prompts, max_new_tokens).
 */
export function prepareGenerate(
  manifest: ModelManifest,
  encode: ((text: string) => number[]) | undefined,
  requests: readonly GenerateRequestItem[],
  paramsInput: DecodeParamsInput,
): PreparedGenerate {
  const m = manifest;
  const params = withModelLookahead(resolveDecodeParams(paramsInput), paramsInput, m);
  if (params.cache !== "none" && !m.cache_support.includes(params.cache)) {
    throw new InvalidDecodeParamsError(
      "cache",
      `cache ${params.cache} is not supported by model ${m.name} (supports: ${m.cache_support.join(", ") || "none"})`,
    );
  }
  const items: PreparedSample[] = [];
  requests.forEach((req, i) => {
    const samples = req.samples ?? 1;
    if (!Number.isInteger(samples) || samples < 1)
      throw new InvalidDecodeParamsError("samples_per_prompt", `samples_per_prompt must be a positive integer, got ${samples}`);
    let promptIds: number[];
    if (typeof req.prompt === "string") {
      if (!encode) throw new InvalidDecodeParamsError("prompts", "this model has no tokenizer: send prompt token ids");
      promptIds = encode(req.prompt);
    } else promptIds = Array.from(req.prompt);
    if (promptIds.some((t) => !Number.isInteger(t) || t < 0 || t >= m.vocab_size || t === m.mask_id)) {
      throw new InvalidDecodeParamsError("prompts", `prompt ${req.promptId} has token ids outside the vocabulary (or MASK)`);
    }
    if (promptIds.length + params.max_new_tokens > m.max_seq_len) {
      throw new InvalidDecodeParamsError(
        "max_new_tokens",
        `max_new_tokens ${params.max_new_tokens} + prompt ${req.promptId} length ${promptIds.length} exceeds max_seq_len ${m.max_seq_len}`,
      );
    }
    const base = req.seed ?? deriveSeed(params.seed, i);
    for (let g = 0; g < samples; g++)
      items.push({ req, promptIds, sampleIndex: g, input: { prompt: promptIds, seed: deriveSeed(base, g) } });
  });
  return { params, items };
}
