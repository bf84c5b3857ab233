import type { ModelManifest } from "@rlmesh/shared/model/index";
import type { DecodeParams, DecodeParamsInput } from "./decode-params.js";

/**
 * A request that leaves `lookahead` unset gets the model's recommendation when it asks for
 * more new tokens than the model was trained to answer in (manifest `decoding`); an explicit
 * value, 0 included, is kept.
 */
export function withModelLookahead(params: DecodeParams, input: DecodeParamsInput, m: ModelManifest): DecodeParams {
  if (input.lookahead !== undefined || !m.decoding || params.max_new_tokens <= m.decoding.response_budget) return params;
  return { ...params, lookahead: m.decoding.lookahead };
}
