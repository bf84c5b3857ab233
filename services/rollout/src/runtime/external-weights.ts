/**
 * Weight versions of a model whose weights live in ONNX external data files (`model.onnx.data`,
 * written by import-hf above 2 GB). onnxruntime opens such a model from its path (it reads the
 * data files next to it), and `replaceWeights` cannot inline them (protobuf's 2 GB limit), so a
 * new version is written as a copy of the graph and its data files in a temporary directory, each
 * pushed tensor written over its own byte range; the session is created from that copy, which is
 * removed afterwards (onnxruntime has read or mapped it).
 */
import { copyFile, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { modelBytes as serialize, replaceWeights } from "@rlmesh/shared/model/index";
import { externalRef, TensorProto_DataType } from "@rlmesh/shared/model/onnx-proto";
import type { parseModel } from "@rlmesh/shared/model/index";

type ModelProto = ReturnType<typeof parseModel>;

/** Names of the initializers stored in external data, with where their bytes are and whether they are float16. */
export function externalTensors(model: ModelProto): Map<string, { location: string; offset: number; length: number | null; float16: boolean }> {
  const out = new Map<string, { location: string; offset: number; length: number | null; float16: boolean }>();
  for (const t of model.graph?.initializer ?? []) {
    const ref = externalRef(t);
    if (ref) out.set(t.name, { ...ref, float16: t.dataType === Number(TensorProto_DataType.FLOAT16) });
  }
  return out;
}

export interface WrittenVersion {
  /** model.onnx of the copy: create the session from this path. */
  modelPath: string;
  dispose(): Promise<void>;
}

/**
 * Writes `weights` into a copy of the model at `modelPath` (graph `base`, data files next to it):
 * inline initializers through `replaceWeights`, external ones over their byte ranges.
 */
export async function writeExternalVersion(modelPath: string, base: ModelProto, weights: ReadonlyMap<string, Float32Array>, tag: string): Promise<WrittenVersion> {
  const external = externalTensors(base);
  const inline = new Map<string, Float32Array>();
  const byFile = new Map<string, Array<{ name: string; offset: number; length: number | null; data: Float32Array }>>();
  for (const [name, data] of weights) {
    const ref = external.get(name);
    if (!ref) {
      inline.set(name, data);
      continue;
    }
    if (ref.float16) {
      // Writing float32 over a float16 byte range cannot fit, and rounding the pushed values to
      // float16 would serve another policy than the one pushed: refused, before anything is written.
      throw new Error(
        `weight ${name} is stored as float16 in external data (${ref.location}: a model imported with --dtype float16 over 2 GB); ` +
          "a pushed float32 version cannot be written over it. Serve a --dtype float32 import to take weight versions",
      );
    }
    const list = byFile.get(ref.location) ?? [];
    list.push({ name, offset: ref.offset, length: ref.length, data });
    byFile.set(ref.location, list);
  }
  const dir = await mkdtemp(join(tmpdir(), `rlmesh-weights-${tag}-`));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    await writeFile(join(dir, basename(modelPath)), serialize(inline.size > 0 ? replaceWeights(base, inline) : base));
    const files = new Set([...external.values()].map((r) => r.location));
    for (const location of files) {
      const to = join(dir, location);
      await copyFile(join(dirname(modelPath), location), to);
      const writes = byFile.get(location) ?? [];
      if (writes.length === 0) continue;
      const fh = await open(to, "r+");
      try {
        for (const w of writes) {
          if (w.length !== null && w.length !== w.data.byteLength) {
            throw new Error(`weight ${w.name}: ${w.data.byteLength} bytes, the external data holds ${w.length}`);
          }
          await fh.write(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength), 0, w.data.byteLength, w.offset);
        }
      } finally {
        await fh.close();
      }
    }
    return { modelPath: join(dir, basename(modelPath)), dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}
