import type { EmbeddingKind, MlpKind, PolicyModelConfig } from "./model-config.js";
import { DEFAULT_NORM_EPS, headDim, kvHeads } from "./model-config.js";

/** Architecture tag of models built by graph-builder.ts. */
export const RLMESH_ARCHITECTURE = "rlmesh-mdlm-v1";
export const MANIFEST_FORMAT_VERSION = 1;
export const MANIFEST_FILE = "manifest.json";
export const DEFAULT_MODEL_FILE = "model.onnx";
export const DEFAULT_TOKENIZER_FILE = "tokenizer.json";
/** Placeholder for the layer index in per-layer tensor names. */
export const LAYER_PLACEHOLDER = "{i}";

export type CacheLayout = "prefix" | "dual";

/**
 * manifest.json: how to drive a model directory (model.onnx + tokenizer.json). Field names are
 * snake_case as in the file. Documented in shared/src/model/README.md.
 */
export interface ModelManifest {
  format_version: number;
  name: string;
  /** `rlmesh-mdlm-v1` for our graphs; any tag for a user's export that follows the I/O contract. */
  architecture: string;
  vocab_size: number;
  mask_id: number;
  pad_id: number;
  eos_id: number;
  /** Dream-style exports predict token j at position j−1; ours do not. */
  shifted_logits: boolean;
  n_layers: number;
  n_heads: number;
  head_dim: number;
  d_model: number;
  max_seq_len: number;
  /** Only for `rlmesh-mdlm-v1`: FF width and RMSNorm epsilon (needed to rebuild the graph). */
  ff_dim?: number;
  norm_eps?: number;
  /** Only for `rlmesh-mdlm-v1`: the LM head is the transposed token embedding. @defaultValue false */
  tied_embeddings?: boolean;
  /**
   * Grouped-query attention: K/V heads. past/present K/V tensors are [B, n_kv_heads, S, head_dim]
   * (the cache holds K/V heads, not query heads). @defaultValue n_heads
   */
  n_kv_heads?: number;
  /** Only for `rlmesh-mdlm-v1` (graph-builder options, absent = the tiny model's choice): q/k/v bias. @defaultValue false */
  qkv_bias?: boolean;
  /** Feed-forward kind. @defaultValue "gelu_sigmoid" */
  mlp?: MlpKind;
  /** RoPE base. @defaultValue 10000 */
  rope_theta?: number;
  /** Token embedding op: one-hot MatMul or Gather. @defaultValue "onehot" */
  embedding?: EmbeddingKind;
  /** DreamOn-style edit tokens, when the vocabulary has `<|expand|>` / `<|delete|>`. */
  expand_id?: number;
  delete_id?: number;
  /**
   * Variable-length infilling's default length rules for this model (a request's own values win):
   * `eos_cut` / `expand_cut` in [0, 1], 0 = DreamOn's order; `length_search`, an integer in
   * [0, 16], 0 = off (the rollout service's InfillParams). Only with `expand_id`. Tuned on
   * training-split rows (`rlmesh bench infill --split train`).
   */
  infill_decoding?: { eos_cut?: number; expand_cut?: number; length_search?: number };
  /**
   * How model.onnx stores its weights: `float16` = FLOAT16 initializers read through a Cast to
   * float32 (`import-hf --dtype float16`; the graph computes in float32). loadModel checks every
   * weight against it. @defaultValue "float32"
   */
  weight_dtype?: "float32" | "float16";
  /** Where the weights came from (e.g. `import-hf`: model_type, source files, dtype); free-form provenance. */
  source?: Record<string, unknown>;
  inputs: {
    input_ids: string;
    position_ids: string;
    attention_mask: string;
    /** Per-layer names with `{i}`; required when cache_support is not empty. */
    past_key?: string;
    past_value?: string;
  };
  outputs: {
    logits: string;
    present_key?: string;
    present_value?: string;
  };
  cache_support: CacheLayout[];
  files: { model: string; tokenizer: string };
  /** Optional special-token strings; when present, loading checks the tokenizer maps them to the ids. */
  special_tokens?: { mask?: string; pad?: string; eos?: string; expand?: string; delete?: string };
  /** Free-form provenance (seed, steps, minutes, measured pass@1). */
  training?: Record<string, unknown>;
  /**
   * Decoding recommendation: for a max_new_tokens above `response_budget` (the response length
   * the model was trained on), show the model only `lookahead` masked positions past the
   * current block (rollout workers apply it when a request leaves lookahead unset).
   */
  decoding?: { response_budget: number; lookahead: number };
}

/** Thrown for any model directory that cannot be used; the message names the file and field. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

export function layerName(template: string, layer: number): string {
  return template.split(LAYER_PLACEHOLDER).join(String(layer));
}

/**
 * The lookahead recommended for a model trained on `responseBudget`-token responses: 3/8 of it
 * (24 for 64). Measured on the shipped base at 256 new tokens, block 32, 200 held-out tasks:
 * lookahead 16 and 24 keep greedy pass@1 at its 64-token level (35–37 %), 32 (block + 32 = the
 * whole trained budget) loses about 5 points, 64 and the whole canvas answer almost nothing.
 */
export function recommendedLookahead(responseBudget: number): number {
  return Math.max(1, Math.floor((responseBudget * 3) / 8));
}

/** The manifest of a graph-builder model. */
export function manifestForConfig(
  config: PolicyModelConfig,
  ids: { mask: number; pad: number; eos: number },
  extra: {
    name?: string;
    special_tokens?: ModelManifest["special_tokens"];
    shifted_logits?: boolean;
    expand_id?: number;
    delete_id?: number;
    source?: Record<string, unknown>;
    training?: Record<string, unknown>;
    decoding?: ModelManifest["decoding"];
    weight_dtype?: ModelManifest["weight_dtype"];
  } = {},
): ModelManifest {
  return {
    format_version: MANIFEST_FORMAT_VERSION,
    name: extra.name ?? "tiny-coder",
    architecture: RLMESH_ARCHITECTURE,
    vocab_size: config.vocabSize,
    mask_id: ids.mask,
    pad_id: ids.pad,
    eos_id: ids.eos,
    shifted_logits: extra.shifted_logits ?? false,
    n_layers: config.nLayers,
    n_heads: config.nHeads,
    head_dim: headDim(config),
    d_model: config.dModel,
    max_seq_len: config.maxSeqLen,
    ff_dim: config.ffDim,
    norm_eps: config.normEps,
    ...(config.tiedEmbeddings ? { tied_embeddings: true } : {}),
    ...(kvHeads(config) !== config.nHeads ? { n_kv_heads: kvHeads(config) } : {}),
    ...(config.qkvBias ? { qkv_bias: true } : {}),
    ...(config.mlp !== undefined && config.mlp !== "gelu_sigmoid" ? { mlp: config.mlp } : {}),
    ...(config.ropeTheta !== undefined && config.ropeTheta !== 10000 ? { rope_theta: config.ropeTheta } : {}),
    ...(config.embedding === "gather" ? { embedding: "gather" as const } : {}),
    ...(extra.expand_id !== undefined ? { expand_id: extra.expand_id } : {}),
    ...(extra.delete_id !== undefined ? { delete_id: extra.delete_id } : {}),
    ...(extra.weight_dtype === "float16" ? { weight_dtype: "float16" as const } : {}),
    inputs: {
      input_ids: "input_ids",
      position_ids: "position_ids",
      attention_mask: "attention_mask",
      past_key: "past_key_{i}",
      past_value: "past_value_{i}",
    },
    outputs: { logits: "logits", present_key: "present_key_{i}", present_value: "present_value_{i}" },
    cache_support: ["prefix", "dual"],
    files: { model: DEFAULT_MODEL_FILE, tokenizer: DEFAULT_TOKENIZER_FILE },
    ...(extra.special_tokens ? { special_tokens: extra.special_tokens } : {}),
    ...(extra.training ? { training: extra.training } : {}),
    ...(extra.decoding ? { decoding: extra.decoding } : {}),
    ...(extra.source ? { source: extra.source } : {}),
  };
}

/** The graph-builder config a manifest describes (only for `rlmesh-mdlm-v1`). */
export function configFromManifest(m: ModelManifest): PolicyModelConfig {
  if (m.architecture !== RLMESH_ARCHITECTURE || m.ff_dim === undefined) {
    throw new ModelLoadError(
      `manifest: architecture ${m.architecture} cannot be rebuilt by rlmesh (needs ${RLMESH_ARCHITECTURE} with ff_dim)`,
    );
  }
  return {
    vocabSize: m.vocab_size,
    dModel: m.d_model,
    nLayers: m.n_layers,
    nHeads: m.n_heads,
    ffDim: m.ff_dim,
    maxSeqLen: m.max_seq_len,
    normEps: m.norm_eps ?? DEFAULT_NORM_EPS,
    ...(m.tied_embeddings ? { tiedEmbeddings: true } : {}),
    ...(m.head_dim * m.n_heads !== m.d_model ? { headDim: m.head_dim } : {}),
    ...(m.n_kv_heads !== undefined && m.n_kv_heads !== m.n_heads ? { nKvHeads: m.n_kv_heads } : {}),
    ...(m.qkv_bias ? { qkvBias: true } : {}),
    ...(m.mlp !== undefined && m.mlp !== "gelu_sigmoid" ? { mlp: m.mlp } : {}),
    ...(m.rope_theta !== undefined ? { ropeTheta: m.rope_theta } : {}),
    ...(m.embedding === "gather" ? { embedding: "gather" as const } : {}),
  };
}

type Json = Record<string, unknown>;

function fail(field: string, expected: string, got: unknown): never {
  throw new ModelLoadError(`manifest.json: ${field} must be ${expected}, got ${JSON.stringify(got)}`);
}
function obj(v: unknown, field: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(field, "an object", v);
  return v as Json;
}
function str(o: Json, key: string, prefix: string): string {
  const v = o[key];
  if (typeof v !== "string" || v === "") fail(prefix + key, "a non-empty string", v);
  return v;
}
function optStr(o: Json, key: string, prefix: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, prefix);
}
function posInt(o: Json, key: string, prefix = ""): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) fail(prefix + key, "a positive integer", v);
  return v;
}
function tokenId(o: Json, key: string, vocab: number): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= vocab) fail(key, `an integer in [0, ${vocab})`, v);
  return v;
}

/** Parses and checks a manifest's fields and their internal consistency (not the files). */
export function validateManifest(raw: unknown): ModelManifest {
  const o = obj(raw, "(root)");
  const format = o["format_version"];
  if (format !== MANIFEST_FORMAT_VERSION) fail("format_version", String(MANIFEST_FORMAT_VERSION), format);
  const vocab = posInt(o, "vocab_size");
  const m: ModelManifest = {
    format_version: MANIFEST_FORMAT_VERSION,
    name: str(o, "name", ""),
    architecture: str(o, "architecture", ""),
    vocab_size: vocab,
    mask_id: tokenId(o, "mask_id", vocab),
    pad_id: tokenId(o, "pad_id", vocab),
    eos_id: tokenId(o, "eos_id", vocab),
    shifted_logits:
      typeof o["shifted_logits"] === "boolean" ? o["shifted_logits"] : fail("shifted_logits", "a boolean", o["shifted_logits"]),
    n_layers: posInt(o, "n_layers"),
    n_heads: posInt(o, "n_heads"),
    head_dim: posInt(o, "head_dim"),
    d_model: posInt(o, "d_model"),
    max_seq_len: posInt(o, "max_seq_len"),
    inputs: { input_ids: "", position_ids: "", attention_mask: "" },
    outputs: { logits: "" },
    cache_support: [],
    files: { model: "", tokenizer: "" },
  };
  if (o["ff_dim"] !== undefined) m.ff_dim = posInt(o, "ff_dim");
  if (o["norm_eps"] !== undefined) {
    const e = o["norm_eps"];
    if (typeof e !== "number" || !(e > 0)) fail("norm_eps", "a positive number", e);
    m.norm_eps = e;
  }
  if (o["tied_embeddings"] !== undefined) {
    const t = o["tied_embeddings"];
    if (typeof t !== "boolean") fail("tied_embeddings", "a boolean", t);
    m.tied_embeddings = t;
  }
  if (o["n_kv_heads"] !== undefined) m.n_kv_heads = posInt(o, "n_kv_heads");
  if (o["qkv_bias"] !== undefined) {
    const t = o["qkv_bias"];
    if (typeof t !== "boolean") fail("qkv_bias", "a boolean", t);
    m.qkv_bias = t;
  }
  if (o["mlp"] !== undefined) {
    const v = o["mlp"];
    if (v !== "gelu_sigmoid" && v !== "swiglu") fail("mlp", '"gelu_sigmoid" or "swiglu"', v);
    m.mlp = v;
  }
  if (o["rope_theta"] !== undefined) {
    const v = o["rope_theta"];
    if (typeof v !== "number" || !(v > 0)) fail("rope_theta", "a positive number", v);
    m.rope_theta = v;
  }
  if (o["embedding"] !== undefined) {
    const v = o["embedding"];
    if (v !== "onehot" && v !== "gather") fail("embedding", '"onehot" or "gather"', v);
    m.embedding = v;
  }
  if (o["expand_id"] !== undefined) m.expand_id = tokenId(o, "expand_id", vocab);
  if (o["delete_id"] !== undefined) m.delete_id = tokenId(o, "delete_id", vocab);
  if (o["infill_decoding"] !== undefined) {
    const d = obj(o["infill_decoding"], "infill_decoding");
    if (m.expand_id === undefined) fail("infill_decoding", "absent: it needs expand_id (variable-length infilling)", d);
    const out: { eos_cut?: number; expand_cut?: number; length_search?: number } = {};
    for (const [k, v] of Object.entries(d)) {
      if (k === "length_search") {
        if (typeof v !== "number" || !(Number.isInteger(v) && v >= 0 && v <= 16)) fail("infill_decoding.length_search", "an integer in [0, 16]", v);
        out.length_search = v;
        continue;
      }
      if (k !== "eos_cut" && k !== "expand_cut") fail(`infill_decoding.${k}`, "absent (known: eos_cut, expand_cut, length_search)", v);
      if (typeof v !== "number" || !(v >= 0 && v <= 1)) fail(`infill_decoding.${k}`, "a number in [0, 1]", v);
      out[k] = v;
    }
    m.infill_decoding = out;
  }
  if (o["weight_dtype"] !== undefined) {
    const v = o["weight_dtype"];
    if (v !== "float32" && v !== "float16") fail("weight_dtype", '"float32" or "float16"', v);
    m.weight_dtype = v;
  }
  if (o["source"] !== undefined) m.source = obj(o["source"], "source");
  if (m.mask_id === m.pad_id || m.mask_id === m.eos_id) {
    throw new ModelLoadError(`manifest.json: mask_id ${m.mask_id} must differ from pad_id ${m.pad_id} and eos_id ${m.eos_id}`);
  }
  const kvH = m.n_kv_heads ?? m.n_heads;
  if (m.n_heads % kvH !== 0) {
    throw new ModelLoadError(`manifest.json: n_heads ${m.n_heads} must be a multiple of n_kv_heads ${kvH}`);
  }
  if (m.architecture === RLMESH_ARCHITECTURE && m.head_dim % 2 !== 0) {
    throw new ModelLoadError(`manifest.json: head_dim ${m.head_dim} must be even (RoPE)`);
  }
  const inputs = obj(o["inputs"], "inputs");
  m.inputs = {
    input_ids: str(inputs, "input_ids", "inputs."),
    position_ids: str(inputs, "position_ids", "inputs."),
    attention_mask: str(inputs, "attention_mask", "inputs."),
  };
  const pk = optStr(inputs, "past_key", "inputs.");
  const pv = optStr(inputs, "past_value", "inputs.");
  if (pk !== undefined) m.inputs.past_key = pk;
  if (pv !== undefined) m.inputs.past_value = pv;
  const outputs = obj(o["outputs"], "outputs");
  m.outputs = { logits: str(outputs, "logits", "outputs.") };
  const prk = optStr(outputs, "present_key", "outputs.");
  const prv = optStr(outputs, "present_value", "outputs.");
  if (prk !== undefined) m.outputs.present_key = prk;
  if (prv !== undefined) m.outputs.present_value = prv;
  const cache = o["cache_support"];
  if (!Array.isArray(cache) || !cache.every((c) => c === "prefix" || c === "dual"))
    fail("cache_support", 'an array of "prefix" | "dual"', cache);
  m.cache_support = cache as CacheLayout[];
  if (m.cache_support.length > 0) {
    for (const [field, v] of [
      ["inputs.past_key", m.inputs.past_key],
      ["inputs.past_value", m.inputs.past_value],
      ["outputs.present_key", m.outputs.present_key],
      ["outputs.present_value", m.outputs.present_value],
    ] as const) {
      if (v === undefined)
        throw new ModelLoadError(`manifest.json: ${field} is required when cache_support is ${JSON.stringify(m.cache_support)}`);
      if (!v.includes(LAYER_PLACEHOLDER)) fail(field, `a per-layer name containing "${LAYER_PLACEHOLDER}"`, v);
    }
  }
  const files = obj(o["files"], "files");
  m.files = { model: str(files, "model", "files."), tokenizer: str(files, "tokenizer", "files.") };
  for (const [k, v] of Object.entries(m.files)) {
    if (v.includes("/") || v.includes("\\") || v.startsWith(".")) fail(`files.${k}`, "a plain file name inside the model directory", v);
  }
  if (o["special_tokens"] !== undefined) {
    const st = obj(o["special_tokens"], "special_tokens");
    const special: NonNullable<ModelManifest["special_tokens"]> = {};
    for (const k of ["mask", "pad", "eos", "expand", "delete"] as const) {
      const v = optStr(st, k, "special_tokens.");
      if (v !== undefined) special[k] = v;
    }
    m.special_tokens = special;
  }
  if (o["training"] !== undefined) m.training = obj(o["training"], "training");
  if (o["decoding"] !== undefined) {
    const d = obj(o["decoding"], "decoding");
    m.decoding = { response_budget: posInt(d, "response_budget", "decoding."), lookahead: posInt(d, "lookahead", "decoding.") };
  }
  return m;
}
