import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { MANIFEST_FILE } from "./model-manifest.js";
import type { ModelManifest } from "./model-manifest.js";

/**
 * Writes model.onnx and manifest.json into `dir` atomically per file (temp file + rename), model
 * first, so a reader never sees a manifest that points at a half-written model.
 */
export async function writeModelDir(dir: string, modelBytes: Uint8Array, manifest: ModelManifest): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tag = `${process.pid}.${Date.now()}`;
  const modelPath = join(dir, manifest.files.model);
  await writeFile(`${modelPath}.${tag}.tmp`, modelBytes);
  await rename(`${modelPath}.${tag}.tmp`, modelPath);
  const manifestPath = join(dir, MANIFEST_FILE);
  await writeFile(`${manifestPath}.${tag}.tmp`, JSON.stringify(manifest, null, 2) + "\n");
  await rename(`${manifestPath}.${tag}.tmp`, manifestPath);
}
