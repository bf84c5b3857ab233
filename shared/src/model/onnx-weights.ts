import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, NodeProtoSchema } from "onnx-buf";
import type { ModelProto, TensorProto } from "onnx-buf";

import { externalRef, floatItemSize, floatTensor, tensorFloats, valueInfo, TensorProto_DataType } from "./onnx-proto.js";

/**
 * Weight handling on a serialized model. Weights live in one place, the graph's initializers:
 * - rollout swaps a version by `replaceWeights` (patched initializers → new ORT session);
 * - the learner turns them into graph inputs with `toDifferentiableGraph`, since jax-js only
 *   differentiates w.r.t. inputs (it treats initializers as constants).
 */

export function parseModel(bytes: Uint8Array): ModelProto {
  const model = fromBinary(ModelProtoSchema, bytes);
  if (!model.graph) throw new Error("ONNX model has no graph");
  return model;
}

export function modelBytes(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

function graphOf(model: ModelProto) {
  if (!model.graph) throw new Error("ONNX model has no graph");
  return model.graph;
}

/**
 * Float initializers by name, in graph order (only the names asked for, if given), as float32:
 * FLOAT16 ones (`weight_dtype` float16) upcast exactly, so every consumer (the learner, the
 * rollout's weight specs) sees the float32 weights the graph computes with. An initializer in
 * external data gives its shape and no values (its bytes are in another file).
 */
export function readWeights(model: ModelProto, names?: readonly string[]): Map<string, { shape: number[]; data: Float32Array }> {
  const wanted = names ? new Set(names) : null;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of graphOf(model).initializer) {
    if (wanted && !wanted.has(t.name)) continue;
    if (!wanted && floatItemSize(t.dataType) === undefined) continue;
    out.set(t.name, { shape: t.dims.map(Number), data: externalRef(t) ? new Float32Array(0) : tensorFloats(t) });
  }
  if (wanted) for (const n of wanted) if (!out.has(n)) throw new Error(`ONNX model has no initializer named ${n}`);
  return out;
}

/**
 * A copy of the model whose named initializers hold new values. Every name must exist with the
 * same element count, so a version from another architecture can never be swapped in. The new
 * values are written as float32, also over a float16 weight: its `Cast(to FLOAT)` is then the
 * identity, so a pushed version runs exactly as the learner computed it.
 */
export function replaceWeights(model: ModelProto, weights: ReadonlyMap<string, Float32Array>): ModelProto {
  const graph = graphOf(model);
  const byName = new Map(graph.initializer.map((t) => [t.name, t]));
  for (const [name, data] of weights) {
    const old = byName.get(name);
    if (!old) throw new Error(`replaceWeights: the model has no weight named ${name}`);
    const n = old.dims.reduce((a, d) => a * Number(d), 1);
    if (n !== data.length) throw new Error(`replaceWeights: ${name} has ${n} values in the model, got ${data.length}`);
  }
  const initializer: TensorProto[] = graph.initializer.map((t) => {
    const data = weights.get(t.name);
    return data ? floatTensor(t.name, t.dims.map(Number), data) : t;
  });
  return create(ModelProtoSchema, { ...model, graph: create(GraphProtoSchema, { ...graph, initializer }) });
}

/**
 * The same graph for differentiation: the named weights become graph inputs (values dropped),
 * and, if the graph has past K/V inputs, they are removed and each `Concat(past, current)` becomes
 * `Identity(current)` — the P = 0 full forward without zero-size tensors, which jax-js lacks.
 */
export function toDifferentiableGraph(model: ModelProto, weightNames: readonly string[], pastInputNames: readonly string[]): ModelProto {
  const graph = graphOf(model);
  const weightSet = new Set(weightNames);
  const pastSet = new Set(pastInputNames);
  // Weights are fed as float32 (readWeights upcasts float16 ones), so their inputs are FLOAT.
  const weightInputs = graph.initializer
    .filter((t) => weightSet.has(t.name))
    .map((t) => valueInfo(t.name, floatItemSize(t.dataType) ? TensorProto_DataType.FLOAT : t.dataType, t.dims.map(Number)));
  if (weightInputs.length !== weightSet.size) {
    const have = new Set(weightInputs.map((v) => v.name));
    throw new Error(`toDifferentiableGraph: missing weights ${weightNames.filter((n) => !have.has(n)).join(", ")}`);
  }
  // A float16 weight's Cast to float32 is the identity on the float32 input: drop it and let its
  // readers take the weight itself, so the graph is node for node a float32 model's (the
  // learner's split-graph path finds the embedding's Gather and the head's Transpose).
  const castOf = new Map<string, string>();
  const FLOAT = BigInt(TensorProto_DataType.FLOAT);
  for (const n of graph.node) {
    if (n.opType === "Cast" && n.input.length === 1 && weightSet.has(n.input[0]!) && n.attribute.find((a) => a.name === "to")?.i === FLOAT) {
      castOf.set(n.output[0]!, n.input[0]!);
    }
  }
  const uncast = castOf.size === 0 ? graph.node : graph.node
    .filter((n) => !castOf.has(n.output[0] ?? ""))
    .map((n) => (n.input.some((i) => castOf.has(i)) ? create(NodeProtoSchema, { ...n, input: n.input.map((i) => castOf.get(i) ?? i) }) : n));
  const nodes = uncast.map((n) => {
    if (!n.input.some((i) => pastSet.has(i))) return n;
    const rest = n.input.filter((i) => !pastSet.has(i));
    if (n.opType !== "Concat" || rest.length !== 1) {
      throw new Error(`toDifferentiableGraph: past input used by ${n.opType} node ${n.name}; only Concat(past, current) is supported`);
    }
    return create(NodeProtoSchema, { name: n.name, opType: "Identity", input: rest, output: n.output });
  });
  return create(ModelProtoSchema, {
    ...model,
    graph: create(GraphProtoSchema, {
      ...graph,
      node: nodes,
      initializer: graph.initializer.filter((t) => !weightSet.has(t.name)),
      input: [...graph.input.filter((v) => !pastSet.has(v.name)), ...weightInputs],
    }),
  });
}
