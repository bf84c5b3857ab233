import type { PolicyModelConfig } from "../model-config.js";
import { HfImportError } from "./hf-import-error.js";

/**
 * Hugging Face `model_type` → the rlmesh graph-builder config and the tensor-name mapping.
 * Each family follows its public modeling code:
 *
 * - `Dream` (modeling_dream.py, Qwen2 blocks): RMSNorm (`rms_norm_eps`), RoPE (`rope_theta`,
 *   rotate-half), grouped-query attention (`num_key_value_heads`), bias on q/k/v (not o), SwiGLU
 *   MLP (gate/up/down, silu), head tied or not (`tie_word_embeddings`), bidirectional attention,
 *   logits shifted (Dream's sampler reads logit i as the prediction of token i+1).
 * - `llada` (modeling_llada.py, OLMo-style `LLaDALlamaBlock`): RMSNorm (`rms_norm_eps`), RoPE
 *   (`rope_theta`), `n_kv_heads`, q/k/v bias only with `include_qkv_bias`, SwiGLU as
 *   `ff_out(silu(ff_proj(x)) * up_proj(x))`, head `transformer.ff_out` unless `weight_tying`,
 *   logits over `embedding_size` ids, no shift.
 *
 * Options those codes support but this importer does not (rope scaling, sliding windows, ALiBi,
 * q/k layer norms, logit scaling, biases elsewhere…) are refused by name, never ignored.
 */

export type HfModelType = "Dream" | "llada";
export const SUPPORTED_MODEL_TYPES: readonly HfModelType[] = ["Dream", "llada"];

export interface HfTensorMapping {
  /** Tensor name in the checkpoint. */
  hf: string;
  /** rlmesh weight name (weight-layout.ts). */
  rl: string;
  /** Shape the checkpoint must have. */
  hfShape: number[];
  /** nn.Linear stores [out, in]; rlmesh MatMul weights are [in, out]. */
  transpose: boolean;
}

export interface HfArchitecture {
  modelType: HfModelType;
  config: PolicyModelConfig;
  shiftedLogits: boolean;
  tensors: HfTensorMapping[];
  /** Checkpoint tensors that carry nothing the graph needs (e.g. a tied head saved twice). */
  ignorable: ReadonlySet<string>;
  /** config.json keys holding the special ids, by role. */
  configIdKeys: { mask: string; pad: string; eos: string; bos: string };
}

type Json = Record<string, unknown>;
const FILE = "config.json";

function missing(key: string, what: string): never {
  throw new HfImportError(`${FILE}: ${key} is missing (${what})`);
}
function posInt(c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    missing(key, "a positive integer is required");
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
    throw new HfImportError(`${FILE}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}
function posNum(c: Json, key: string): number {
  const v = c[key];
  if (v === undefined || v === null) missing(key, "a positive number is required");
  if (typeof v !== "number" || !(v > 0)) throw new HfImportError(`${FILE}: ${key} must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}
function bool(c: Json, key: string, fallback: boolean): boolean {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new HfImportError(`${FILE}: ${key} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}
/** Refuses a config value the importer does not implement. */
function only(c: Json, key: string, allowed: readonly unknown[], why: string): void {
  const v = c[key];
  if (v === undefined) return;
  if (!allowed.some((a) => a === v)) {
    throw new HfImportError(
      `${FILE}: ${key} ${JSON.stringify(v)} is not supported (${why}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")})`,
    );
  }
}

export function hfArchitecture(raw: unknown): HfArchitecture {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new HfImportError(`${FILE}: not a JSON object`);
  const c = raw as Json;
  const modelType = c["model_type"];
  if (modelType === undefined) missing("model_type", `one of ${SUPPORTED_MODEL_TYPES.join(", ")}`);
  if (modelType === "Dream") return dream(c);
  if (modelType === "llada") return llada(c);
  throw new HfImportError(
    `${FILE}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`,
  );
}

const linear = (hf: string, rl: string, outDim: number, inDim: number): HfTensorMapping => ({
  hf,
  rl,
  hfShape: [outDim, inDim],
  transpose: true,
});
const vector = (hf: string, rl: string, n: number): HfTensorMapping => ({ hf, rl, hfShape: [n], transpose: false });

function dream(c: Json): HfArchitecture {
  only(c, "hidden_act", ["silu"], "Dream's MLP is SwiGLU");
  only(c, "rope_scaling", [null], "RoPE scaling");
  only(c, "use_sliding_window", [false], "sliding-window attention");
  const d = posInt(c, "hidden_size");
  const nHeads = posInt(c, "num_attention_heads");
  const nKv = posInt(c, "num_key_value_heads");
  const headDim = posInt(c, "head_dim", Math.floor(d / nHeads));
  if (c["head_dim"] === undefined && d % nHeads !== 0)
    throw new HfImportError(`${FILE}: hidden_size ${d} is not divisible by num_attention_heads ${nHeads}`);
  if (nHeads % nKv !== 0) throw new HfImportError(`${FILE}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKv}`);
  const tied = bool(c, "tie_word_embeddings", false);
  const config: PolicyModelConfig = {
    vocabSize: posInt(c, "vocab_size"),
    dModel: d,
    nLayers: posInt(c, "num_hidden_layers"),
    nHeads,
    nKvHeads: nKv,
    ...(headDim * nHeads !== d ? { headDim } : {}),
    ffDim: posInt(c, "intermediate_size"),
    maxSeqLen: posInt(c, "max_position_embeddings"),
    normEps: posNum(c, "rms_norm_eps"),
    ropeTheta: posNum(c, "rope_theta"),
    qkvBias: true,
    mlp: "swiglu",
    embedding: "gather",
    ...(tied ? { tiedEmbeddings: true } : {}),
  };
  const q = nHeads * headDim;
  const kv = nKv * headDim;
  const f = config.ffDim;
  const V = config.vocabSize;
  const tensors: HfTensorMapping[] = [{ hf: "model.embed_tokens.weight", rl: "tok_embedding", hfShape: [V, d], transpose: false }];
  for (let i = 0; i < config.nLayers; i++) {
    const h = `model.layers.${i}`;
    const r = `layers.${i}`;
    tensors.push(
      vector(`${h}.input_layernorm.weight`, `${r}.attn_norm`, d),
      linear(`${h}.self_attn.q_proj.weight`, `${r}.attn.wq`, q, d),
      linear(`${h}.self_attn.k_proj.weight`, `${r}.attn.wk`, kv, d),
      linear(`${h}.self_attn.v_proj.weight`, `${r}.attn.wv`, kv, d),
      vector(`${h}.self_attn.q_proj.bias`, `${r}.attn.bq`, q),
      vector(`${h}.self_attn.k_proj.bias`, `${r}.attn.bk`, kv),
      vector(`${h}.self_attn.v_proj.bias`, `${r}.attn.bv`, kv),
      linear(`${h}.self_attn.o_proj.weight`, `${r}.attn.wo`, d, q),
      vector(`${h}.post_attention_layernorm.weight`, `${r}.ffn_norm`, d),
      linear(`${h}.mlp.gate_proj.weight`, `${r}.ffn.w_gate`, f, d),
      linear(`${h}.mlp.up_proj.weight`, `${r}.ffn.w_up`, f, d),
      linear(`${h}.mlp.down_proj.weight`, `${r}.ffn.w_down`, d, f),
    );
  }
  tensors.push(vector("model.norm.weight", "final_norm", d));
  if (!tied) tensors.push(linear("lm_head.weight", "lm_head", V, d));
  return {
    modelType: "Dream",
    config,
    shiftedLogits: true,
    tensors,
    ignorable: new Set(tied ? ["lm_head.weight"] : []),
    configIdKeys: { mask: "mask_token_id", pad: "pad_token_id", eos: "eos_token_id", bos: "bos_token_id" },
  };
}

function llada(c: Json): HfArchitecture {
  only(c, "block_type", ["llama"], "LLaDA's released models use LLaDALlamaBlock");
  only(c, "activation_type", ["silu"], "SwiGLU MLP");
  only(c, "layer_norm_type", ["rms"], "RMSNorm");
  only(c, "rope", [true], "rotary positions");
  only(c, "alibi", [false], "ALiBi");
  only(c, "attention_layer_norm", [false], "q/k layer norms");
  only(c, "include_bias", [false], "biases on every linear layer and norm");
  only(c, "bias_for_layer_norm", [false, null], "norm biases");
  only(c, "layer_norm_with_affine", [true], "norm weights");
  only(c, "scale_logits", [false], "logit scaling");
  only(c, "input_emb_norm", [false], "embedding scaling");
  only(c, "clip_qkv", [null], "q/k/v clipping");
  only(c, "block_group_size", [1], "block groups");
  const d = posInt(c, "d_model");
  const nHeads = posInt(c, "n_heads");
  if (d % nHeads !== 0) throw new HfImportError(`${FILE}: d_model ${d} is not divisible by n_heads ${nHeads}`);
  const mqa = bool(c, "multi_query_attention", false);
  const nKv = mqa ? 1 : posInt(c, "n_kv_heads", nHeads);
  if (nHeads % nKv !== 0) throw new HfImportError(`${FILE}: n_heads ${nHeads} is not a multiple of n_kv_heads ${nKv}`);
  const vocab = posInt(c, "vocab_size");
  const embeddingSize = posInt(c, "embedding_size", vocab);
  if (embeddingSize < vocab) throw new HfImportError(`${FILE}: embedding_size ${embeddingSize} is smaller than vocab_size ${vocab}`);
  const mlpHidden = c["mlp_hidden_size"] ?? null;
  const ffDim = mlpHidden === null ? posInt(c, "mlp_ratio") * d : posInt(c, "mlp_hidden_size");
  const tied = bool(c, "weight_tying", false);
  const qkvBias = bool(c, "include_qkv_bias", false);
  const headDim = d / nHeads;
  const config: PolicyModelConfig = {
    vocabSize: embeddingSize,
    dModel: d,
    nLayers: posInt(c, "n_layers"),
    nHeads,
    nKvHeads: nKv,
    ffDim,
    maxSeqLen: posInt(c, "max_sequence_length"),
    normEps: posNum(c, "rms_norm_eps"),
    ropeTheta: posNum(c, "rope_theta"),
    mlp: "swiglu",
    embedding: "gather",
    ...(qkvBias ? { qkvBias: true } : {}),
    ...(tied ? { tiedEmbeddings: true } : {}),
  };
  const kv = nKv * headDim;
  const V = embeddingSize;
  const tensors: HfTensorMapping[] = [{ hf: "model.transformer.wte.weight", rl: "tok_embedding", hfShape: [V, d], transpose: false }];
  for (let i = 0; i < config.nLayers; i++) {
    const h = `model.transformer.blocks.${i}`;
    const r = `layers.${i}`;
    tensors.push(
      vector(`${h}.attn_norm.weight`, `${r}.attn_norm`, d),
      linear(`${h}.q_proj.weight`, `${r}.attn.wq`, d, d),
      linear(`${h}.k_proj.weight`, `${r}.attn.wk`, kv, d),
      linear(`${h}.v_proj.weight`, `${r}.attn.wv`, kv, d),
    );
    if (qkvBias)
      tensors.push(
        vector(`${h}.q_proj.bias`, `${r}.attn.bq`, d),
        vector(`${h}.k_proj.bias`, `${r}.attn.bk`, kv),
        vector(`${h}.v_proj.bias`, `${r}.attn.bv`, kv),
      );
    tensors.push(
      linear(`${h}.attn_out.weight`, `${r}.attn.wo`, d, d),
      vector(`${h}.ff_norm.weight`, `${r}.ffn_norm`, d),
      linear(`${h}.ff_proj.weight`, `${r}.ffn.w_gate`, ffDim, d),
      linear(`${h}.up_proj.weight`, `${r}.ffn.w_up`, ffDim, d),
      linear(`${h}.ff_out.weight`, `${r}.ffn.w_down`, d, ffDim),
    );
  }
  tensors.push(vector("model.transformer.ln_f.weight", "final_norm", d));
  if (!tied) tensors.push(linear("model.transformer.ff_out.weight", "lm_head", V, d));
  return {
    modelType: "llada",
    config,
    shiftedLogits: false,
    tensors,
    ignorable: new Set(),
    configIdKeys: { mask: "mask_token_id", pad: "pad_token_id", eos: "eos_token_id", bos: "bos_token_id" },
  };
}
