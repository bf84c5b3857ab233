import { create, toBinary } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import type { ModelProto, NodeProto, TensorProto, ValueInfoProto } from "onnx-buf";

import type { WeightMap } from "./init-weights.js";
import { DEFAULT_ROPE_THETA, headDim, kvHeads, validateModelConfig } from "./model-config.js";
import type { PolicyModelConfig } from "./model-config.js";
import {
  ATTENTION_MASK,
  INPUT_IDS,
  LOGITS,
  POSITION_IDS,
  pastKeyName,
  pastValueName,
  presentKeyName,
  presentValueName,
} from "./model-io-names.js";
import { float32ToFloat16, firstNonFiniteHalf } from "./float16.js";
import { externalFloatTensor, float16Tensor, floatTensor, int64Tensor, node, TensorProto_DataType, valueInfo } from "./onnx-proto.js";
import type { AttrValue, Dim } from "./onnx-proto.js";
import { shapeSize, weightLayout } from "./weight-layout.js";

/** ONNX opset of the graph: 18 takes reduction axes as inputs, which both runtimes accept. */
export const OPSET = 18;
export const IR_VERSION = 8n;
/** Additive bias for masked keys; exp() of it underflows to exactly 0 in float32. */
export const MASKED_KEY_BIAS = 1e9;
/** Coefficient of the sigmoid GELU approximation x·σ(1.702x) (one op fewer than tanh-GELU). */
export const GELU_SIGMOID_COEF = 1.702;
/** Default RoPE base frequency (as in Llama; configs override it with `ropeTheta`). */
export const ROPE_BASE = DEFAULT_ROPE_THETA;

export interface BuildGraphOptions {
  /**
   * Emit past_key_i/past_value_i inputs (the rollout contract). The learner builds without them:
   * it always runs full forwards, and jax-js cannot feed zero-size arrays.
   * @defaultValue true
   */
  withPast?: boolean;
  /**
   * Weights as initializers (one self-contained file; ORT swaps versions by patching them) or as
   * plain graph inputs (jax-js differentiates w.r.t. inputs only).
   * @defaultValue "initializers"
   */
  weightsAs?: "initializers" | "inputs";
  /**
   * Weights stored as ONNX external data (a model whose weights pass protobuf's 2 GB limit): those
   * named here become initializers that point into a file next to model.onnx and need no values
   * in `weights`. Only with weightsAs "initializers".
   */
  externalWeights?: ReadonlyMap<string, ExternalTensorRef>;
  /**
   * Storage of the weight initializers. `float16`: each weight is a FLOAT16 initializer under its
   * own name, read through `Cast(to FLOAT)` into `<name>.f32`, so the graph still computes in
   * float32 (half the bytes on disk; onnxruntime folds the Casts into float32 constants when it
   * creates the session). A float32 tensor swapped in under the same name (`replaceWeights`)
   * keeps the graph valid: Cast float→float is the identity. Only with weightsAs "initializers";
   * external refs then hold 2 bytes per element.
   * @defaultValue "float32"
   */
  weightDtype?: WeightDtype;
  /**
   * With weightDtype "float16": weights already converted (float16 bits, e.g. by import-hf, which
   * checks their range itself); those named here need no float32 values in `weights`.
   */
  float16Bits?: ReadonlyMap<string, Uint16Array>;
}

/** How the weights of a model file are stored (manifest `weight_dtype`). */
export type WeightDtype = "float32" | "float16";

/** The Cast output a float16 weight is read through (`<name>.f32`). */
export function float32ViewName(weight: string): string {
  return `${weight}.f32`;
}

/** Where one initializer's float32 bytes live in an external data file (relative to model.onnx). */
export interface ExternalTensorRef {
  location: string;
  offset: number;
  length: number;
}

/** Symbolic dims of the contract. */
const B = "batch";
const T = "seq";
const P = "past_seq";
const S = "total_seq";

/**
 * Builds the policy transformer: token embedding as a one-hot matmul (so the learner's gradient
 * needs no scatter), RoPE on q/k from explicit position_ids, pre-RMSNorm bidirectional attention
 * over past+current keys, sigmoid-GELU MLP, LM head untied or tied to the embedding (config). Logits are not shifted.
 * The config's family options (README "Family options") change pieces of this one graph, never
 * its I/O contract: GQA (K/V with nKvHeads heads, queries grouped), q/k/v bias, SwiGLU, ropeTheta,
 * an explicit headDim, a Gather embedding; left unset, the graph is node for node the tiny model's.
 *
 * Attention is laid out for jax-js's fast gradients: scores = MatMul(q, Transpose(k)) with k
 * stored [B,H,S,Dh]; P·V is a plain MatMul, which measured faster under jax-js's gradient than the
 * broadcast-multiply + ReduceSum form (1.10 s vs 1.28 s per fwd+bwd at B 32 × T 128, d 128, 4 layers).
 */
export function buildPolicyGraph(config: PolicyModelConfig, weights: WeightMap, options: BuildGraphOptions = {}): ModelProto {
  validateModelConfig(config);
  const withPast = options.withPast ?? true;
  const weightsAs = options.weightsAs ?? "initializers";
  const b = new GraphAssembler();
  const { vocabSize: V, nHeads: H, nLayers } = config;
  const Dh = headDim(config);
  const Hkv = kvHeads(config);
  /** Query heads per K/V head (1 without grouped-query attention). */
  const G = H / Hkv;
  const ropeTheta = config.ropeTheta ?? ROPE_BASE;

  const inputs: ValueInfoProto[] = [
    valueInfo(INPUT_IDS, TensorProto_DataType.INT64, [B, T]),
    valueInfo(POSITION_IDS, TensorProto_DataType.INT64, [B, T]),
    valueInfo(ATTENTION_MASK, TensorProto_DataType.FLOAT, [B, withPast ? S : T]),
  ];
  if (withPast) {
    for (let i = 0; i < nLayers; i++) {
      inputs.push(valueInfo(pastKeyName(i), TensorProto_DataType.FLOAT, [B, Hkv, P, Dh]));
      inputs.push(valueInfo(pastValueName(i), TensorProto_DataType.FLOAT, [B, Hkv, P, Dh]));
    }
  }
  const half = (options.weightDtype ?? "float32") === "float16";
  if (half && weightsAs !== "initializers") throw new Error('buildPolicyGraph: weightDtype "float16" needs weightsAs "initializers"');
  const weightInits: TensorProto[] = [];
  for (const spec of weightLayout(config)) {
    const ext = options.externalWeights?.get(spec.name);
    if (ext) {
      if (weightsAs !== "initializers") throw new Error("buildPolicyGraph: externalWeights need weightsAs \"initializers\"");
      if (ext.length !== shapeSize(spec.shape) * (half ? 2 : 4)) {
        throw new Error(
          `buildPolicyGraph: external weight ${spec.name} has ${ext.length} bytes, expected [${spec.shape.join(",")}] ${half ? "float16" : "float32"}`,
        );
      }
      weightInits.push(externalFloatTensor(spec.name, spec.shape, ext, half ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT));
      continue;
    }
    const bits = half ? options.float16Bits?.get(spec.name) : undefined;
    if (bits) {
      if (bits.length !== shapeSize(spec.shape)) {
        throw new Error(`buildPolicyGraph: weight ${spec.name} has ${bits.length} float16 values, expected [${spec.shape.join(",")}]`);
      }
      weightInits.push(float16Tensor(spec.name, spec.shape, bits));
      continue;
    }
    const data = weights.get(spec.name);
    if (!data) throw new Error(`buildPolicyGraph: missing weight ${spec.name}`);
    if (data.length !== shapeSize(spec.shape)) {
      throw new Error(`buildPolicyGraph: weight ${spec.name} has ${data.length} values, expected [${spec.shape.join(",")}]`);
    }
    if (weightsAs === "initializers") {
      if (!half) weightInits.push(floatTensor(spec.name, spec.shape, data));
      else {
        const bits = float32ToFloat16(data);
        const bad = firstNonFiniteHalf(bits);
        if (bad >= 0) throw new Error(`buildPolicyGraph: weight ${spec.name} value ${data[bad]} at flat index ${bad} does not fit float16`);
        weightInits.push(float16Tensor(spec.name, spec.shape, bits));
      }
    } else inputs.push(valueInfo(spec.name, TensorProto_DataType.FLOAT, spec.shape));
  }

  // Constants (not trainable).
  const gather = config.embedding === "gather";
  const vocabIds = gather ? "" : b.constInt64("const.vocab_ids", [V], range(V));
  // RoPE (rotate-half layout): inverse frequencies [Dh/2] and the [Dh,Dh] matrix R with x·R = rotate_half(x).
  const invFreq = b.constFloats(
    "const.rope_inv_freq",
    [Dh / 2],
    Array.from({ length: Dh / 2 }, (_, j) => 1 / Math.pow(ropeTheta, (2 * j) / Dh)),
  );
  const rotateHalf = b.constFloats("const.rope_rotate_half", [Dh, Dh], rotateHalfMatrix(Dh));
  const axesRope = b.constInt64("const.axes_rope", [1], [1]);
  const axesLast = b.constInt64("const.axes_last", [1], [-1]);
  const axesMask = b.constInt64("const.axes_mask", [2], [1, 2]);
  const headsShape = b.constInt64("const.heads_shape", [2], [H, Dh]);
  const modelShape = b.constInt64("const.model_shape", [1], [H * Dh]);
  // Grouped-query attention: K/V split into Hkv heads; q into [Hkv, G] groups (see the layer loop).
  const kvHeadsShape = G > 1 ? b.constInt64("const.kv_heads_shape", [2], [Hkv, Dh]) : headsShape;
  const groupShape = G > 1 ? b.constInt64("const.group_shape", [3], [Hkv, G, Dh]) : "";
  const axesGroup = G > 1 ? b.constInt64("const.axes_group", [1], [2]) : "";
  const one = b.constFloat("const.one", 1);
  const maskBig = b.constFloat("const.mask_bias", MASKED_KEY_BIAS);
  const scale = b.constFloat("const.attn_scale", 1 / Math.sqrt(Dh));
  const eps = b.constFloat("const.norm_eps", config.normEps);
  const geluK = config.mlp === "swiglu" ? "" : b.constFloat("const.gelu_coef", GELU_SIGMOID_COEF);

  const oneHotMatmul = (ids: string, table: string, arange: string, tag: string): string => {
    const eq = b.op("Equal", [b.op("Unsqueeze", [ids, axesLast], `${tag}.unsq`), arange], `${tag}.eq`);
    return b.op("MatMul", [b.op("Cast", [eq], `${tag}.onehot`, { to: TensorProto_DataType.FLOAT }), table], `${tag}.emb`);
  };
  let x = gather
    ? b.op("Gather", ["tok_embedding", INPUT_IDS], "tok.emb", { axis: 0 })
    : oneHotMatmul(INPUT_IDS, "tok_embedding", vocabIds, "tok");

  // Angles [B,T,Dh] = position · inv_freq, duplicated for both halves; cos/sin as [B,1,T,Dh].
  const freqs = b.op(
    "Mul",
    [b.op("Unsqueeze", [b.op("Cast", [POSITION_IDS], "rope.pos", { to: TensorProto_DataType.FLOAT }), axesLast], "rope.pos_u"), invFreq],
    "rope.freqs",
  );
  const angles = b.op("Concat", [freqs, freqs], "rope.angles", { axis: -1 });
  const cos = b.op("Unsqueeze", [b.op("Cos", [angles], "rope.cos3"), axesRope], "rope.cos");
  const sin = b.op("Unsqueeze", [b.op("Sin", [angles], "rope.sin3"), axesRope], "rope.sin");
  // [B,1,1,T,Dh] for the grouped [B,Hkv,G,T,Dh] queries.
  const cos5 = G > 1 ? b.op("Unsqueeze", [cos, axesRope], "rope.cos5") : "";
  const sin5 = G > 1 ? b.op("Unsqueeze", [sin, axesRope], "rope.sin5") : "";
  const rope = (t: string, tag: string, outName?: string, grouped = false): string =>
    b.op(
      "Add",
      [
        b.op("Mul", [t, grouped ? cos5 : cos], `${tag}.rc`),
        b.op("Mul", [b.op("MatMul", [t, rotateHalf], `${tag}.rh`), grouped ? sin5 : sin], `${tag}.rs`),
      ],
      outName ?? `${tag}.rope`,
    );

  const btShape = b.op("Shape", [INPUT_IDS], "bt_shape");
  const qkvShape = b.op("Concat", [btShape, headsShape], "qkv_shape", { axis: 0 });
  const kvShape = G > 1 ? b.op("Concat", [btShape, kvHeadsShape], "kv_shape", { axis: 0 }) : qkvShape;
  const qGroupShape = G > 1 ? b.op("Concat", [btShape, groupShape], "q_group_shape", { axis: 0 }) : "";
  const outShape = b.op("Concat", [btShape, modelShape], "out_shape", { axis: 0 });
  // [B,S] in {0,1} → additive bias [B,1,1,S]: 0 where attended, −1e9 where masked.
  const maskBias = b.op(
    "Unsqueeze",
    [b.op("Mul", [b.op("Sub", [ATTENTION_MASK, one], "mask.m1"), maskBig], "mask.bias2d"), axesMask],
    "mask.bias",
  );
  const maskBias5 = G > 1 ? b.op("Unsqueeze", [maskBias, axesRope], "mask.bias5") : "";

  const rmsNorm = (h: string, w: string, tag: string): string => {
    const ms = b.op("ReduceMean", [b.op("Mul", [h, h], `${tag}.sq`), axesLast], `${tag}.ms`, { keepdims: 1 });
    const inv = b.op("Sqrt", [b.op("Add", [ms, eps], `${tag}.mse`)], `${tag}.rms`);
    return b.op("Mul", [b.op("Div", [h, inv], `${tag}.normed`), w], `${tag}.out`);
  };
  const project = (h: string, w: string, bias: string | null, tag: string): string => {
    const proj = b.op("MatMul", [h, w], `${tag}.proj`);
    return bias ? b.op("Add", [proj, bias], `${tag}.proj_b`) : proj;
  };
  /** [B,T,n·Dh] → [B,n,T,Dh]. */
  const heads = (proj: string, shape: string, tag: string, outName?: string): string =>
    b.op("Transpose", [b.op("Reshape", [proj, shape], `${tag}.split`)], outName ?? `${tag}.heads`, {
      perm: [0, 2, 1, 3],
    });

  for (let i = 0; i < nLayers; i++) {
    const p = `layers.${i}`;
    const h = rmsNorm(x, `${p}.attn_norm`, `${p}.attn_norm`);
    const bias = (n: string) => (config.qkvBias ? `${p}.attn.${n}` : null);
    const qProj = project(h, `${p}.attn.wq`, bias("bq"), `${p}.q`);
    // Grouped-query attention without copying K/V: q as [B,Hkv,G,T,Dh] against K/V [B,Hkv,1,S,Dh]
    // (a broadcast MatMul), so query head h = kv·G + g reads K/V head kv = ⌊h/G⌋ (HF repeat_kv).
    const q =
      G === 1
        ? rope(heads(qProj, qkvShape, `${p}.q`), `${p}.q`)
        : rope(
            b.op("Transpose", [b.op("Reshape", [qProj, qGroupShape], `${p}.q.split`)], `${p}.q.groups`, { perm: [0, 2, 3, 1, 4] }),
            `${p}.q`,
            undefined,
            true,
          );
    const k = rope(heads(project(h, `${p}.attn.wk`, bias("bk"), `${p}.k`), kvShape, `${p}.k`), `${p}.k`, presentKeyName(i));
    const v = heads(project(h, `${p}.attn.wv`, bias("bv"), `${p}.v`), kvShape, `${p}.v`, presentValueName(i));
    const kAll = withPast ? b.op("Concat", [pastKeyName(i), k], `${p}.k_all`, { axis: 2 }) : k;
    const vAll = withPast ? b.op("Concat", [pastValueName(i), v], `${p}.v_all`, { axis: 2 }) : v;
    const kT = b.op("Transpose", [kAll], `${p}.k_t`, { perm: [0, 1, 3, 2] });
    let merged: string;
    if (G === 1) {
      const scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q, kT], `${p}.qk`), scale], `${p}.qk_scaled`), maskBias], `${p}.scores`);
      const probs = b.op("Softmax", [scores], `${p}.probs`, { axis: -1 });
      const ctx = b.op("MatMul", [probs, vAll], `${p}.ctx`);
      merged = b.op("Reshape", [b.op("Transpose", [ctx], `${p}.ctx_t`, { perm: [0, 2, 1, 3] }), outShape], `${p}.ctx_merged`);
    } else {
      const kT5 = b.op("Unsqueeze", [kT, axesGroup], `${p}.k_t5`);
      const v5 = b.op("Unsqueeze", [vAll, axesGroup], `${p}.v5`);
      const scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q, kT5], `${p}.qk`), scale], `${p}.qk_scaled`), maskBias5], `${p}.scores`);
      const probs = b.op("Softmax", [scores], `${p}.probs`, { axis: -1 });
      const ctx = b.op("MatMul", [probs, v5], `${p}.ctx`);
      merged = b.op("Reshape", [b.op("Transpose", [ctx], `${p}.ctx_t`, { perm: [0, 3, 1, 2, 4] }), outShape], `${p}.ctx_merged`);
    }
    x = b.op("Add", [x, b.op("MatMul", [merged, `${p}.attn.wo`], `${p}.attn_out`)], `${p}.resid1`);

    const f = rmsNorm(x, `${p}.ffn_norm`, `${p}.ffn_norm`);
    const up = b.op("MatMul", [f, `${p}.ffn.w_up`], `${p}.up`);
    let act: string;
    if (config.mlp === "swiglu") {
      const g = b.op("MatMul", [f, `${p}.ffn.w_gate`], `${p}.gate_proj`);
      const silu = b.op("Mul", [g, b.op("Sigmoid", [g], `${p}.gate_sig`)], `${p}.silu`);
      act = b.op("Mul", [silu, up], `${p}.act`);
    } else {
      act = b.op("Mul", [up, b.op("Sigmoid", [b.op("Mul", [up, geluK], `${p}.up_k`)], `${p}.gate`)], `${p}.act`);
    }
    x = b.op("Add", [x, b.op("MatMul", [act, `${p}.ffn.w_down`], `${p}.ffn_out`)], `${p}.resid2`);
  }
  const final = rmsNorm(x, "final_norm", "final_norm");
  const head = config.tiedEmbeddings ? b.op("Transpose", ["tok_embedding"], "lm_head.tied", { perm: [1, 0] }) : "lm_head";
  b.op("MatMul", [final, head], LOGITS);

  const outputs: ValueInfoProto[] = [valueInfo(LOGITS, TensorProto_DataType.FLOAT, [B, T, V])];
  for (let i = 0; i < nLayers; i++) {
    outputs.push(valueInfo(presentKeyName(i), TensorProto_DataType.FLOAT, [B, Hkv, T, Dh]));
    outputs.push(valueInfo(presentValueName(i), TensorProto_DataType.FLOAT, [B, Hkv, T, Dh]));
  }

  let nodes = b.nodes;
  if (half) {
    // Every weight read goes through its Cast to float32; the Casts come first.
    const weightNames = new Set(weightInits.map((t) => t.name));
    const casts = weightInits.map((t) => node("Cast", `${t.name}.cast_f32`, [t.name], [float32ViewName(t.name)], { to: TensorProto_DataType.FLOAT }));
    for (const n of nodes) n.input = n.input.map((i) => (weightNames.has(i) ? float32ViewName(i) : i));
    nodes = [...casts, ...nodes];
  }

  const graph = create(GraphProtoSchema, {
    name: "rlmesh_policy",
    node: nodes,
    initializer: [...weightInits, ...b.constants],
    input: inputs,
    output: outputs,
  });
  return create(ModelProtoSchema, {
    irVersion: IR_VERSION,
    producerName: "rlmesh",
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(OPSET) })],
    graph,
  });
}

/** Serialized bytes of a model. */
export function serializeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

/** R with (x·R)[j] = −x[j+h] for j < h and x[j−h] for j ≥ h (h = Dh/2): rotate_half as a matmul. */
function rotateHalfMatrix(dh: number): number[] {
  const h = dh / 2;
  const r = new Array<number>(dh * dh).fill(0);
  for (let j = 0; j < h; j++) r[(j + h) * dh + j] = -1;
  for (let j = h; j < dh; j++) r[(j - h) * dh + j] = 1;
  return r;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

class GraphAssembler {
  readonly nodes: NodeProto[] = [];
  readonly constants: TensorProto[] = [];

  op(opType: string, inputs: string[], output: string, attrs: Record<string, AttrValue> = {}): string {
    this.nodes.push(node(opType, output, inputs, [output], attrs));
    return output;
  }

  constInt64(name: string, shape: number[], values: number[]): string {
    this.constants.push(int64Tensor(name, shape, values));
    return name;
  }

  constFloats(name: string, shape: number[], values: number[]): string {
    this.constants.push(floatTensor(name, shape, Float32Array.from(values)));
    return name;
  }

  constFloat(name: string, value: number): string {
    this.constants.push(floatTensor(name, [], new Float32Array([value])));
    return name;
  }
}

export type { Dim };
