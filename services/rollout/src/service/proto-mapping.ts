/**
 * Plain mapping between the rollout.proto messages (as @grpc/proto-loader objects) and the
 * engine's types. Unset proto3 optional fields mean "worker default".
 */
import type { DecodingParams, GenerateRequest, GenerateResponseIn, ModelInfoIn } from "@rlmesh/shared";
import type { DecodeParamsInput } from "../decoding/decode-params.js";
import type { CacheMode } from "../decoding/decode-params.js";
import type { UnmaskAlg } from "../decoding/sampling.js";
import type { EngineInfo, GenerateRequestItem, GenerateResult } from "../runtime/ort-rollout-engine.js";

export function decodeParamsFromProto(p: DecodingParams | null | undefined): DecodeParamsInput {
  if (!p) return {};
  const out: DecodeParamsInput = {};
  if (p.alg) out.alg = p.alg as UnmaskAlg;
  if (p.algTemp !== undefined) out.alg_temp = p.algTemp;
  if (p.temperature !== undefined) out.temperature = p.temperature;
  if (p.topP !== undefined) out.top_p = p.topP;
  if (p.topK !== undefined) out.top_k = p.topK;
  if (p.steps !== undefined) out.steps = p.steps;
  if (p.maxNewTokens !== undefined) out.max_new_tokens = p.maxNewTokens;
  if (p.blockLength !== undefined) out.block_length = p.blockLength;
  if (p.threshold !== undefined) out.threshold = p.threshold;
  if (p.factor !== undefined) out.factor = p.factor;
  if (p.cache) out.cache = p.cache as CacheMode;
  if (p.padPenalty !== undefined) out.pad_penalty = p.padPenalty;
  if (p.seed !== undefined) out.seed = Number(p.seed);
  if (p.lookahead !== undefined && p.lookahead !== null) out.lookahead = p.lookahead;
  if (p.trace === true) out.trace = true;
  return out;
}

export function requestItemsFromProto(req: GenerateRequest): GenerateRequestItem[] {
  return req.prompts.map((p, i) => ({ promptId: p.id || String(i), prompt: p.text, samples: req.samplesPerPrompt || 1 }));
}

export function generateResponseToProto(res: GenerateResult, workerId: string): GenerateResponseIn {
  return {
    samples: res.samples.map((s) => ({
      promptId: s.promptId,
      sampleIndex: s.sampleIndex,
      promptTokenIds: s.promptTokenIds,
      tokenIds: s.tokenIds,
      text: s.text,
      policyVersion: s.policyVersion,
      policyJobId: s.policyJobId,
      nfe: s.nfe,
      timings: { queueSeconds: s.timings.queueSeconds, decodeSeconds: s.timings.decodeSeconds },
      finished: s.finished,
      ...(s.commitSteps ? { commitSteps: s.commitSteps } : {}),
    })),
    workerId,
    policyVersion: res.policyVersion,
    policyJobId: res.policyJobId,
    seconds: res.seconds,
  };
}

export function modelInfoToProto(info: EngineInfo, workerId: string): ModelInfoIn {
  const m = info.manifest;
  return {
    modelName: m.name,
    vocabSize: m.vocab_size,
    maskId: m.mask_id,
    padId: m.pad_id,
    eosId: m.eos_id,
    maxSeqLen: m.max_seq_len,
    shiftedLogits: m.shifted_logits,
    cacheSupport: [...m.cache_support],
    policyVersion: info.policyVersion,
    policyJobId: info.policyJobId,
    executionProvider: info.executionProvider,
    weights: info.weights.map((w) => ({ name: w.name, dtype: w.dtype, shape: w.shape })),
    workerId,
    modelFingerprint: info.modelFingerprint,
  };
}
