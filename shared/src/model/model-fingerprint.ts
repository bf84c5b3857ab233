/**
 * A model directory's weights fingerprint: sha256 (hex) of its ONNX file, then of each external
 * data file (sorted by name) — every byte of the graph and its weights, nothing of the path,
 * manifest or tokenizer. Two services run the same model when the manifest's name and this
 * agree (ModelInfo.model_fingerprint; the api compares them at SubmitJob, the learner at
 * StartJob). For a self-contained model it is sha256(model.onnx).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";

/** What the fingerprint reads: a LoadedModel has these fields. */
export interface FingerprintSource {
  dir: string;
  modelBytes: Uint8Array;
  externalDataFiles: readonly string[];
}

export async function modelFingerprint(model: FingerprintSource): Promise<string> {
  const h = createHash("sha256").update(model.modelBytes);
  for (const f of [...model.externalDataFiles].sort()) {
    for await (const chunk of createReadStream(join(model.dir, f))) h.update(chunk as Buffer);
  }
  return h.digest("hex");
}

const cache = new Map<string, { key: string; fingerprint: Promise<string> }>();

/**
 * `modelFingerprint`, remembered per directory while its files keep their size and mtime (a
 * 7B model's 15 GB is read once per process, not per submitted job).
 */
export async function cachedModelFingerprint(model: FingerprintSource & { modelPath: string }): Promise<string> {
  const files = [model.modelPath, ...[...model.externalDataFiles].sort().map((f) => join(model.dir, f))];
  const stats = await Promise.all(files.map((f) => stat(f)));
  const key = stats.map((s, i) => `${files[i]}:${s.size}:${s.mtimeMs}`).join("|");
  const hit = cache.get(model.dir);
  if (hit && hit.key === key) return hit.fingerprint;
  const fingerprint = modelFingerprint(model);
  fingerprint.catch(() => cache.delete(model.dir));
  cache.set(model.dir, { key, fingerprint });
  return fingerprint;
}
