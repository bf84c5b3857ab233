import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DEFAULT_MODEL_DIR } from "../repo-paths.js";
import { loadModel } from "./load-model.js";
import { cachedModelFingerprint, modelFingerprint } from "./model-fingerprint.js";

const dir = mkdtempSync(join(tmpdir(), "rlmesh-fingerprint-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("the fingerprint of a self-contained model is sha256(model.onnx); the cache follows a changed file", async () => {
  const copy = join(dir, "m");
  cpSync(DEFAULT_MODEL_DIR, copy, { recursive: true });
  const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
  const loaded = await loadModel(copy);
  assert.equal(await modelFingerprint(loaded), sha(join(copy, "model.onnx")));
  assert.equal(await cachedModelFingerprint(loaded), sha(join(copy, "model.onnx")));
  // Another model.onnx in the same directory (one byte of a float changed, a later mtime).
  const bytes = Uint8Array.from(loaded.modelBytes);
  bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 1;
  writeFileSync(join(copy, "model.onnx"), bytes);
  utimesSync(join(copy, "model.onnx"), new Date(), new Date(Date.now() + 5_000));
  const changed = { ...loaded, modelBytes: bytes };
  const fp = await cachedModelFingerprint(changed);
  assert.equal(fp, sha(join(copy, "model.onnx")));
  assert.notEqual(fp, await modelFingerprint(loaded));
});
