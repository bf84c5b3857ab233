import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

import type { ModelProto, ValueInfoProto } from "onnx-buf";

import { configFromManifest, layerName, MANIFEST_FILE, ModelLoadError, RLMESH_ARCHITECTURE, validateManifest } from "./model-manifest.js";
import type { ModelManifest } from "./model-manifest.js";
import { parseModel } from "./onnx-weights.js";
import { externalRef, floatItemSize, TensorProto_DataType, valueInfoDims, valueInfoElemType } from "./onnx-proto.js";
import type { Dim } from "./onnx-proto.js";
import { weightLayout } from "./weight-layout.js";

/** A model directory that passed every check; nothing else (sessions, jax arrays) is created. */
export interface LoadedModel {
  dir: string;
  manifest: ModelManifest;
  modelPath: string;
  tokenizerPath: string;
  /** The ONNX file, ready for `InferenceSession.create(bytes)` or the learner's jax-js graph. */
  modelBytes: Uint8Array;
  /** Number of ids the tokenizer can produce (≤ vocab_size). */
  tokenizerVocabSize: number;
  /**
   * ONNX external data files next to model.onnx (weights above protobuf's 2 GB limit), checked to
   * hold every referenced byte range. Empty for a self-contained model. When not empty, create
   * ORT sessions from `modelPath` (ORT resolves the files next to it), not from `modelBytes`.
   */
  externalDataFiles: string[];
}

/**
 * Reads and validates `dir/manifest.json` against `model.onnx` and `tokenizer.json`: I/O names,
 * dtypes and fixed dims, layer count, vocab and special ids, weight shapes of our own
 * architecture. Throws ModelLoadError naming the file and what is wrong.
 */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const manifest = await loadManifest(dir);
  const modelPath = join(dir, manifest.files.model);
  const tokenizerPath = join(dir, manifest.files.tokenizer);
  const modelBytes = await readBytes(modelPath, manifest.files.model);
  let model: ModelProto;
  try {
    model = parseModel(modelBytes);
  } catch (err) {
    throw new ModelLoadError(`${manifest.files.model}: not a valid ONNX model (${(err as Error).message})`);
  }
  checkGraphAgainstManifest(model, manifest, manifest.files.model);
  const externalDataFiles = await checkExternalData(model, dir, manifest.files.model);
  const tokenizerVocabSize = checkTokenizer(await readJson(tokenizerPath, manifest.files.tokenizer), manifest);
  return { dir, manifest, modelPath, tokenizerPath, modelBytes, tokenizerVocabSize, externalDataFiles };
}

/** The directory's manifest.json alone, validated (no graph or tokenizer read). Throws ModelLoadError. */
export async function loadManifest(dir: string): Promise<ModelManifest> {
  return validateManifest(await readJson(join(dir, MANIFEST_FILE), MANIFEST_FILE));
}

/** Every external-data reference of the graph points at a plain file in `dir` that holds its byte range. */
async function checkExternalData(model: ModelProto, dir: string, label: string): Promise<string[]> {
  const sizes = new Map<string, number>();
  for (const t of model.graph!.initializer) {
    const ref = externalRef(t);
    if (!ref) continue;
    const loc = ref.location;
    if (loc === "" || loc.includes("/") || loc.includes("\\") || loc.startsWith(".")) {
      throw new ModelLoadError(`${label}: initializer "${t.name}" has external data location ${JSON.stringify(loc)}, not a plain file name in the model directory`);
    }
    let size = sizes.get(loc);
    if (size === undefined) {
      try {
        size = (await stat(join(dir, loc))).size;
      } catch (err) {
        throw new ModelLoadError(`${label}: initializer "${t.name}" needs external data file ${loc} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      sizes.set(loc, size);
    }
    const length = ref.length ?? t.dims.reduce((a, d) => a * Number(d), 1) * (floatItemSize(t.dataType) ?? 4);
    if (!(ref.offset >= 0) || ref.offset + length > size) {
      throw new ModelLoadError(`${loc}: initializer "${t.name}" needs bytes ${ref.offset}..${ref.offset + length}, the file has ${size} (truncated?)`);
    }
  }
  return [...sizes.keys()];
}

async function readBytes(path: string, label: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    throw new ModelLoadError(`${label}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

async function readJson(path: string, label: string): Promise<unknown> {
  const bytes = await readBytes(path, label);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new ModelLoadError(`${label}: invalid JSON (${(err as Error).message})`);
  }
}

interface TensorExpectation {
  field: string;
  name: string;
  elemType: number;
  /** null = any size. */
  dims: (number | null)[];
  /** The manifest key each fixed dim comes from (named in the error, e.g. vocab_size). */
  dimKeys?: (string | null)[];
}

function describeType(t: number): string {
  return TensorProto_DataType[t] ?? String(t);
}

function checkTensor(info: ValueInfoProto | undefined, exp: TensorExpectation, label: string, kind: "input" | "output"): void {
  if (!info) throw new ModelLoadError(`${label}: has no ${kind} "${exp.name}" (manifest ${exp.field})`);
  const elem = valueInfoElemType(info);
  if (elem !== null && elem !== exp.elemType) {
    throw new ModelLoadError(`${label}: ${kind} "${exp.name}" is ${describeType(elem)}, expected ${describeType(exp.elemType)}`);
  }
  const dims = valueInfoDims(info);
  if (!dims) return;
  if (dims.length !== exp.dims.length) {
    throw new ModelLoadError(`${label}: ${kind} "${exp.name}" has rank ${dims.length}, expected ${exp.dims.length}`);
  }
  exp.dims.forEach((want, i) => {
    const got: Dim | undefined = dims[i];
    if (want !== null && typeof got === "number" && got !== want) {
      const key = exp.dimKeys?.[i];
      throw new ModelLoadError(`${label}: ${kind} "${exp.name}" dim ${i} is ${got}, manifest says ${want} (${key ? `manifest.json ${key}; ` : ""}${exp.field})`);
    }
  });
}

function checkGraphAgainstManifest(model: ModelProto, m: ModelManifest, label: string): void {
  const graph = model.graph!;
  const initNames = new Set(graph.initializer.map((t) => t.name));
  const inputs = new Map(graph.input.filter((v) => !initNames.has(v.name)).map((v) => [v.name, v]));
  const outputs = new Map(graph.output.map((v) => [v.name, v]));
  const F = TensorProto_DataType.FLOAT;
  const I64 = TensorProto_DataType.INT64;
  const expectedInputs: TensorExpectation[] = [
    { field: "inputs.input_ids", name: m.inputs.input_ids, elemType: I64, dims: [null, null] },
    { field: "inputs.position_ids", name: m.inputs.position_ids, elemType: I64, dims: [null, null] },
    { field: "inputs.attention_mask", name: m.inputs.attention_mask, elemType: F, dims: [null, null] },
  ];
  const expectedOutputs: TensorExpectation[] = [
    { field: "outputs.logits", name: m.outputs.logits, elemType: F, dims: [null, null, m.vocab_size], dimKeys: [null, null, "vocab_size"] },
  ];
  // K/V tensors carry the K/V heads (grouped-query attention: fewer than n_heads).
  const kv = [null, m.n_kv_heads ?? m.n_heads, null, m.head_dim];
  const perLayer = (field: string, template: string | undefined, list: TensorExpectation[]) => {
    if (template === undefined) return;
    const kvKeys = [null, m.n_kv_heads === undefined ? "n_heads" : "n_kv_heads", null, "head_dim"];
    for (let i = 0; i < m.n_layers; i++) list.push({ field, name: layerName(template, i), elemType: F, dims: kv, dimKeys: kvKeys });
    const extra = layerName(template, m.n_layers);
    if (inputs.has(extra) || outputs.has(extra)) {
      throw new ModelLoadError(`${label}: has "${extra}" but manifest n_layers is ${m.n_layers}`);
    }
  };
  perLayer("inputs.past_key", m.inputs.past_key, expectedInputs);
  perLayer("inputs.past_value", m.inputs.past_value, expectedInputs);
  perLayer("outputs.present_key", m.outputs.present_key, expectedOutputs);
  perLayer("outputs.present_value", m.outputs.present_value, expectedOutputs);
  for (const e of expectedInputs) checkTensor(inputs.get(e.name), e, label, "input");
  for (const e of expectedOutputs) checkTensor(outputs.get(e.name), e, label, "output");
  const described = new Set(expectedInputs.map((e) => e.name));
  for (const name of inputs.keys()) {
    if (!described.has(name)) throw new ModelLoadError(`${label}: input "${name}" is not described by manifest.json`);
  }
  if (m.architecture === RLMESH_ARCHITECTURE) {
    const inits = new Map(graph.initializer.map((t) => [t.name, t.dims.map(Number)]));
    const layout = weightLayout(configFromManifest(m));
    const expected = new Set(layout.map((s) => s.name));
    for (const name of inits.keys()) {
      if (!name.startsWith("const.") && !expected.has(name)) {
        throw new ModelLoadError(
          `${label}: weight "${name}" is not in the ${RLMESH_ARCHITECTURE} layout manifest.json describes (check mlp, qkv_bias, tied_embeddings)`,
        );
      }
    }
    for (const spec of layout) {
      const shape = inits.get(spec.name);
      if (!shape) throw new ModelLoadError(`${label}: missing weight "${spec.name}" of ${RLMESH_ARCHITECTURE}`);
      if (shape.join(",") !== spec.shape.join(",")) {
        throw new ModelLoadError(`${label}: weight "${spec.name}" is [${shape.join(",")}], manifest implies [${spec.shape.join(",")}]`);
      }
    }
    checkWeightDtype(graph, new Set(layout.map((s) => s.name)), m.weight_dtype ?? "float32", label);
  }
}

/**
 * Every weight is stored as manifest `weight_dtype` says; a float16 weight is read only through a
 * Cast to float32 (the graph computes in float32, as `import-hf --dtype float16` builds it).
 */
function checkWeightDtype(graph: NonNullable<ModelProto["graph"]>, weights: Set<string>, dtype: "float32" | "float16", label: string): void {
  const want = dtype === "float16" ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT;
  for (const t of graph.initializer) {
    if (!weights.has(t.name) || t.dataType === Number(want)) continue;
    throw new ModelLoadError(
      `${label}: weight "${t.name}" is ${describeType(t.dataType)}, manifest.json weight_dtype is ${dtype} (stored as ${describeType(want)})`,
    );
  }
  if (dtype !== "float16") return;
  for (const n of graph.node) {
    const w = n.input.find((i) => weights.has(i));
    if (w === undefined) continue;
    const to = n.attribute.find((a) => a.name === "to")?.i;
    if (n.opType !== "Cast" || to !== BigInt(TensorProto_DataType.FLOAT)) {
      throw new ModelLoadError(
        `${label}: float16 weight "${w}" is read by ${n.opType} node "${n.name}"; with weight_dtype float16 each weight is read only through a Cast to float32`,
      );
    }
  }
}

/** Largest id + 1 in a tokenizer.json (model vocab and added tokens); checks special ids. */
function checkTokenizer(raw: unknown, m: ModelManifest): number {
  const label = m.files.tokenizer;
  if (typeof raw !== "object" || raw === null) throw new ModelLoadError(`${label}: not a tokenizer.json object`);
  const tok = raw as { model?: { vocab?: unknown }; added_tokens?: { id: number; content: string }[] };
  const ids = new Map<string, number>();
  const vocab = tok.model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach((entry, i) => ids.set(String(Array.isArray(entry) ? entry[0] : entry), i));
  else if (vocab && typeof vocab === "object") for (const [k, v] of Object.entries(vocab)) ids.set(k, Number(v));
  else throw new ModelLoadError(`${label}: has no model.vocab`);
  for (const t of tok.added_tokens ?? []) ids.set(t.content, t.id);
  let size = 0;
  for (const id of ids.values()) size = Math.max(size, id + 1);
  if (size > m.vocab_size) {
    throw new ModelLoadError(`${label}: tokenizer produces ids up to ${size - 1} but manifest vocab_size is ${m.vocab_size}`);
  }
  for (const [key, id] of [
    ["mask", m.mask_id],
    ["pad", m.pad_id],
    ["eos", m.eos_id],
    ["expand", m.expand_id],
    ["delete", m.delete_id],
  ] as const) {
    const token = m.special_tokens?.[key];
    if (token !== undefined && id === undefined) {
      throw new ModelLoadError(`manifest.json: special_tokens.${key} is "${token}" but ${key}_id is missing`);
    }
    if (token === undefined) continue;
    const got = ids.get(token);
    if (got === undefined) throw new ModelLoadError(`${label}: has no special token "${token}" (manifest special_tokens.${key})`);
    if (got !== id) throw new ModelLoadError(`${label}: "${token}" has id ${got}, manifest ${key}_id is ${id}`);
  }
  return size;
}
