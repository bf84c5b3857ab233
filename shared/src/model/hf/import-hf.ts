import { copyFile, mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

import { buildPolicyGraph, serializeModel } from "../graph-builder.js";
import type { ExternalTensorRef, WeightDtype } from "../graph-builder.js";
import { firstNonFiniteHalf, float32ToFloat16, FLOAT16_MAX } from "../float16.js";
import type { WeightMap } from "../init-weights.js";
import { loadModel } from "../load-model.js";
import type { LoadedModel } from "../load-model.js";
import {
  configFromManifest,
  DEFAULT_MODEL_FILE,
  DEFAULT_TOKENIZER_FILE,
  MANIFEST_FILE,
  manifestForConfig,
  ModelLoadError,
  RLMESH_ARCHITECTURE,
  validateManifest,
} from "../model-manifest.js";
import type { ModelManifest } from "../model-manifest.js";
import { parameterCount, weightLayout } from "../weight-layout.js";
import { hfArchitecture } from "./hf-architectures.js";
import type { HfArchitecture, HfTensorMapping } from "./hf-architectures.js";
import { HfImportError } from "./hf-import-error.js";
import { openCheckpointTensors, readSafetensorsTensor } from "./safetensors.js";
import type { SafetensorsTensor } from "./safetensors.js";
import { resolveSpecialIds, tokenizerTable } from "./special-ids.js";

/** protobuf cannot serialize a message of 2 GiB or more; stay clear of it (graph + constants). */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 2 * 1024 ** 3 - 64 * 1024 ** 2;
export const EXTERNAL_DATA_FILE = "model.onnx.data";
/** External tensors start on this boundary (page-aligned, so ORT can map them). */
const EXTERNAL_ALIGN = 4096;

export interface ImportHfOptions {
  /** Output model directory; must not exist or be empty. Written as a temp sibling, renamed at the end. */
  out: string;
  /** Manifest name. @defaultValue the source directory's name */
  name?: string;
  /** Special ids stated by the user (CLI --mask-id/--pad-id/--eos-id); they win over the checkpoint's files. */
  specialIds?: Partial<Record<"mask" | "pad" | "eos", number>>;
  /**
   * Storage of the written weights. `float16`: FLOAT16 initializers (half the bytes of float32),
   * each read through a Cast to float32 in the graph, which computes in float32 as before; the
   * manifest says `weight_dtype: "float16"`. A weight outside float16's range (|x| > 65504) is
   * refused by name. @defaultValue "float32"
   */
  dtype?: WeightDtype;
  /** Weights bytes above which they go to model.onnx.data (ONNX external data). */
  externalDataThreshold?: number;
  /** Progress lines (tensor k/n, MB/s). */
  onProgress?: (line: string) => void;
}

export interface ImportHfResult {
  model: LoadedModel;
  modelType: string;
  parameters: number;
  tensors: number;
  weightBytes: number;
  external: boolean;
  seconds: number;
}

async function readJsonFile(dir: string, file: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(join(dir, file), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === "ENOENT") return null;
    throw new HfImportError(`${file}: cannot read ${join(dir, file)} (${code ?? (err as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new HfImportError(`${file}: invalid JSON (${(err as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new HfImportError(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
}

/** Where a tensor should have been: the shard index if the checkpoint has one, else model.safetensors. */
function checkpointLabel(files: { file: string }[]): string {
  return files.length === 1 && files[0]!.file === "model.safetensors" ? "model.safetensors" : "model.safetensors.index.json";
}

/** Every tensor the architecture needs is present with its shape; nothing unknown is left over. */
function matchTensors(arch: HfArchitecture, tensors: Map<string, SafetensorsTensor>, label: string): Map<string, SafetensorsTensor> {
  const out = new Map<string, SafetensorsTensor>();
  for (const m of arch.tensors) {
    const t = tensors.get(m.hf);
    if (!t)
      throw new HfImportError(
        `${label}: tensor "${m.hf}" is missing (a ${arch.modelType} checkpoint as config.json describes it needs it)`,
      );
    if (t.shape.join(",") !== m.hfShape.join(",")) {
      throw new HfImportError(
        `${t.file}: tensor "${m.hf}" has shape [${t.shape.join(", ")}], config.json implies [${m.hfShape.join(", ")}]`,
      );
    }
    out.set(m.hf, t);
  }
  for (const [name, t] of tensors) {
    if (out.has(name) || arch.ignorable.has(name) || name.endsWith(".rotary_emb.inv_freq")) continue;
    throw new HfImportError(
      `${t.file}: tensor "${name}" is not part of a ${arch.modelType} checkpoint as config.json describes it (an unsupported option?)`,
    );
  }
  return out;
}

/** [rows, cols] row-major → [cols, rows], in cache-friendly tiles. */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  const B = 64;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) {
        const r = i * cols;
        for (let j = j0; j < j1; j++) out[j * rows + i] = src[r + j]!;
      }
    }
  }
  return out;
}

async function rlmeshTensor(m: HfTensorMapping, t: SafetensorsTensor): Promise<Float32Array> {
  const data = await readSafetensorsTensor(t);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) throw new HfImportError(`${t.file}: tensor "${m.hf}" holds a non-finite value at flat index ${i}`);
  }
  return m.transpose ? transpose2d(data, m.hfShape[0]!, m.hfShape[1]!) : data;
}

/** float16 bits of a tensor for --dtype float16; a value past float16's range is refused by name. */
function halfTensor(m: HfTensorMapping, t: SafetensorsTensor, data: Float32Array): Uint16Array {
  const bits = float32ToFloat16(data);
  const bad = firstNonFiniteHalf(bits);
  if (bad >= 0) {
    throw new HfImportError(
      `${t.file}: tensor "${m.hf}" holds ${data[bad]} (rlmesh layout, flat index ${bad}), outside float16's range ±${FLOAT16_MAX}: --dtype float16 cannot store it (use --dtype float32)`,
    );
  }
  return bits;
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw err;
  }
}

/**
 * The project's own format (a directory with manifest.json, no config.json): checked with
 * loadModel (a bad one is refused naming the file and field), then copied the same way — temp
 * sibling, renamed — with --name applied to the manifest.
 */
async function copyRlmeshModelDir(src: string, options: ImportHfOptions, t0: number): Promise<ImportHfResult> {
  let loaded: LoadedModel;
  try {
    loaded = await loadModel(src);
  } catch (err) {
    if (err instanceof ModelLoadError) throw new HfImportError(err.message);
    throw err;
  }
  const out = resolve(options.out);
  if (!(await isEmptyOrMissing(out))) throw new HfImportError(`--out ${options.out}: exists and is not empty (refusing to overwrite)`);
  const tmp = join(dirname(out), `.${basename(out)}.import-${process.pid}-${Date.now()}.tmp`);
  await mkdir(tmp, { recursive: true });
  try {
    const m = loaded.manifest;
    for (const f of [m.files.model, m.files.tokenizer, ...loaded.externalDataFiles]) await copyFile(join(src, f), join(tmp, f));
    await writeFile(join(tmp, MANIFEST_FILE), JSON.stringify({ ...m, ...(options.name ? { name: options.name } : {}) }, null, 2) + "\n");
    const checked = await loadModel(tmp);
    await rm(out, { recursive: true, force: true });
    await rename(tmp, out);
    const model: LoadedModel = { ...checked, dir: out, modelPath: join(out, m.files.model), tokenizerPath: join(out, m.files.tokenizer) };
    const seconds = (performance.now() - t0) / 1000;
    options.onProgress?.(
      `import-hf: ${src} is an rlmesh model directory (${m.architecture}); checked and copied to ${out} in ${seconds.toFixed(1)} s`,
    );
    const parameters = m.architecture === RLMESH_ARCHITECTURE && m.ff_dim !== undefined ? parameterCount(configFromManifest(m)) : 0;
    return {
      model,
      modelType: "rlmesh",
      parameters,
      tensors: 0,
      weightBytes: parameters * 4,
      external: loaded.externalDataFiles.length > 0,
      seconds,
    };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Imports a Hugging Face model directory (config.json, optional generation_config.json,
 * *.safetensors with an optional model.safetensors.index.json, tokenizer.json, optional
 * tokenizer_config.json) into an rlmesh model directory: model.onnx from the graph builder
 * (+ model.onnx.data when the weights pass the threshold), tokenizer.json, manifest.json.
 * Everything is checked before the heavy work; the output is written to a temp sibling
 * directory, verified with loadModel, then renamed, so a failure leaves nothing at `out`.
 */
export async function importHfCheckpoint(src: string, options: ImportHfOptions): Promise<ImportHfResult> {
  const t0 = performance.now();
  const progress = options.onProgress ?? (() => {});
  const dtype = options.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float16") throw new HfImportError(`--dtype must be float32 or float16, got ${String(dtype)}`);
  const hasConfig = await readFile(join(src, "config.json")).then(
    () => true,
    () => false,
  );
  const hasManifest = await readFile(join(src, MANIFEST_FILE)).then(
    () => true,
    () => false,
  );
  if (!hasConfig && hasManifest) return copyRlmeshModelDir(src, options, t0);
  const config = (await readJsonFile(src, "config.json", true))!;
  const arch = hfArchitecture(config);
  const tokenizerRaw = await readJsonFile(src, "tokenizer.json", true);
  const tokenizer = tokenizerTable(tokenizerRaw);
  const vocabKey = arch.modelType === "llada" && config["embedding_size"] !== undefined ? "embedding_size" : "vocab_size";
  if (tokenizer.size > arch.config.vocabSize) {
    throw new HfImportError(
      `tokenizer.json: has ids up to ${tokenizer.size - 1}, but config.json ${vocabKey} is ${arch.config.vocabSize} (tokenizer and model disagree)`,
    );
  }
  const ids = resolveSpecialIds({
    config,
    generationConfig: await readJsonFile(src, "generation_config.json", false),
    tokenizerConfig: await readJsonFile(src, "tokenizer_config.json", false),
    tokenizer,
    vocabSize: arch.config.vocabSize,
    vocabKey,
    idKeys: arch.configIdKeys,
    ...(options.specialIds ? { overrides: options.specialIds } : {}),
  });
  const { files, tensors } = await openCheckpointTensors(src);
  const matched = matchTensors(arch, tensors, checkpointLabel(files));

  const out = resolve(options.out);
  if (!(await isEmptyOrMissing(out))) throw new HfImportError(`--out ${options.out}: exists and is not empty (refusing to overwrite)`);
  const parameters = parameterCount(arch.config);
  const weightBytes = parameters * (dtype === "float16" ? 2 : 4);
  const external = weightBytes > (options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD);
  progress(
    `import-hf: ${arch.modelType} d ${arch.config.dModel}, ${arch.config.nLayers} layers, heads ${arch.config.nHeads}/${arch.config.nKvHeads ?? arch.config.nHeads}, ` +
      `vocab ${arch.config.vocabSize}, ${(parameters / 1e6).toFixed(1)} M params, ${files.length} safetensors file(s)` +
      (external ? `; weights ${(weightBytes / 1024 ** 3).toFixed(2)} GiB → ${EXTERNAL_DATA_FILE}` : ""),
  );

  const tmp = join(dirname(out), `.${basename(out)}.import-${process.pid}-${Date.now()}.tmp`);
  await mkdir(tmp, { recursive: true });
  try {
    const byRl = new Map(arch.tensors.map((m) => [m.rl, m]));
    const layout = weightLayout(arch.config);
    const weights: WeightMap = new Map();
    const refs = new Map<string, ExternalTensorRef>();
    const halfBits = new Map<string, Uint16Array>();
    const dataFile = external ? await open(join(tmp, EXTERNAL_DATA_FILE), "w") : null;
    let offset = 0;
    let done = 0;
    let lastReport = performance.now();
    try {
      for (const [k, spec] of layout.entries()) {
        const m = byRl.get(spec.name);
        if (!m) throw new Error(`import-hf: internal: no checkpoint tensor maps to ${spec.name}`);
        const t = matched.get(m.hf)!;
        const data = await rlmeshTensor(m, t);
        const bits = dtype === "float16" ? halfTensor(m, t, data) : null;
        if (dataFile) {
          offset = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
          const bytes = bits ? new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
          await dataFile.write(bytes, 0, bytes.byteLength, offset);
          refs.set(spec.name, { location: EXTERNAL_DATA_FILE, offset, length: bytes.byteLength });
          offset += bytes.byteLength;
        } else if (bits) halfBits.set(spec.name, bits);
        else weights.set(spec.name, data);
        done += bits ? bits.byteLength : data.byteLength;
        const now = performance.now();
        if (now - lastReport > 2000 || k === layout.length - 1) {
          const s = (now - t0) / 1000;
          progress(
            `import-hf: tensor ${k + 1}/${layout.length} (${spec.name}), ${(done / 1024 ** 2).toFixed(0)}/${(weightBytes / 1024 ** 2).toFixed(0)} MB, ${(done / 1024 ** 2 / s).toFixed(0)} MB/s`,
          );
          lastReport = now;
        }
      }
    } finally {
      await dataFile?.close();
    }
    const tRead = performance.now();
    const graph = buildPolicyGraph(arch.config, weights, {
      weightDtype: dtype,
      ...(halfBits.size > 0 ? { float16Bits: halfBits } : {}),
      ...(external ? { externalWeights: refs } : {}),
    });
    weights.clear();
    halfBits.clear();
    const name = options.name ?? basename(resolve(src));
    const manifest: ModelManifest = validateManifest(
      manifestForConfig(
        arch.config,
        { mask: ids.mask, pad: ids.pad, eos: ids.eos },
        {
          name,
          shifted_logits: arch.shiftedLogits,
          special_tokens: ids.tokens,
          weight_dtype: dtype,
          ...(ids.expand !== undefined ? { expand_id: ids.expand } : {}),
          ...(ids.delete !== undefined ? { delete_id: ids.delete } : {}),
          source: {
            importer: "rlmesh import-hf",
            model_type: arch.modelType,
            source_name: basename(resolve(src)),
            safetensors_files: files.map((f) => f.file),
            dtype,
            checkpoint_dtypes: [...new Set([...matched.values()].map((t) => t.dtype))].sort(),
            special_id_sources: ids.sources,
            ...(external ? { external_data: EXTERNAL_DATA_FILE } : {}),
          },
        },
      ),
    );
    await writeFile(join(tmp, DEFAULT_MODEL_FILE), serializeModel(graph));
    const tWrite = performance.now();
    await copyFile(join(src, "tokenizer.json"), join(tmp, DEFAULT_TOKENIZER_FILE));
    await writeFile(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    const checked = await loadModel(tmp); // the same checks every consumer runs, before anything appears at `out`
    const tCheck = performance.now();
    await rm(out, { recursive: true, force: true }); // an empty directory (checked above)
    await rename(tmp, out);
    const model: LoadedModel = {
      ...checked,
      dir: out,
      modelPath: join(out, checked.manifest.files.model),
      tokenizerPath: join(out, checked.manifest.files.tokenizer),
    };
    const seconds = (performance.now() - t0) / 1000;
    progress(
      `import-hf: wrote ${out} in ${seconds.toFixed(1)} s (${(weightBytes / 1024 ** 2).toFixed(0)} MB of ${dtype} weights${external ? ` in ${EXTERNAL_DATA_FILE}` : ""}; ` +
        `read + convert ${((tRead - t0) / 1000).toFixed(1)} s, build + write ONNX ${((tWrite - tRead) / 1000).toFixed(1)} s, loadModel check ${((tCheck - tWrite) / 1000).toFixed(1)} s)`,
    );
    return { model, modelType: arch.modelType, parameters, tensors: layout.length, weightBytes, external, seconds };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
