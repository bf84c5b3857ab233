/** The model a rollout engine serves: ONNX bytes, manifest, text codec and fingerprint, loaded from a directory. */
import { resolve } from "node:path";
import { loadModel, type ModelManifest } from "@rlmesh/shared/model/index";
import { modelFingerprint } from "@rlmesh/shared/model/model-fingerprint";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";

/** Text side of the model: prompt encoding (must match training) and response decoding. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export interface RolloutModel {
  modelBytes: Uint8Array;
  manifest: ModelManifest;
  /** Without it, prompts must be token ids and `text` is empty. */
  codec?: TextCodec;
  /** sha256 of the directory's own weights (shared model-fingerprint.ts); "" when not loaded from a directory. */
  fingerprint?: string;
  /** model.onnx's path when its weights are in ONNX external data (sessions are then created from the path). */
  externalModelPath?: string;
  /** Ids the tokenizer can produce (< vocab_size when the checkpoint pads its vocabulary); none above is sampled. */
  tokenizerVocabSize?: number;
}

/** Loads a model directory (manifest.json, model.onnx, tokenizer.json) with its text codec. */
export async function loadRolloutModel(dir: string): Promise<RolloutModel> {
  const loaded = await loadModel(dir);
  const tok = await loadTokenizer(loaded.tokenizerPath);
  return {
    modelBytes: loaded.modelBytes,
    manifest: loaded.manifest,
    fingerprint: await modelFingerprint(loaded),
    tokenizerVocabSize: loaded.tokenizerVocabSize,
    ...(loaded.externalDataFiles.length > 0 ? { externalModelPath: resolve(loaded.modelPath) } : {}),
    codec: { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids, { skipSpecial: true }) },
  };
}
