/** Random-weight contract models for tests and benchmarks (no trained model needed). */
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  buildPolicyGraph,
  initWeights,
  manifestForConfig,
  serializeModel,
  writeModelDir,
  type ModelManifest,
  type PolicyModelConfig,
} from "@rlmesh/shared/model/index";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";

export const TEST_IDS = { mask: 0, pad: 1, eos: 2 };

export const SMALL_TEST_CONFIG: PolicyModelConfig = {
  vocabSize: 37,
  dModel: 16,
  nLayers: 2,
  nHeads: 2,
  ffDim: 24,
  maxSeqLen: 48,
  normEps: 1e-5,
};

/**
 * A serialized graph-builder model with seeded random weights. `scale` enlarges the init so
 * attention is far from uniform and cache mistakes change the tokens.
 */
export function randomContractModel(
  config: PolicyModelConfig = SMALL_TEST_CONFIG,
  seed = 7,
  scale = 25,
): { bytes: Uint8Array; manifest: ModelManifest } {
  const w = initWeights(config, seed);
  for (const [name, data] of w) if (!name.endsWith("norm")) for (let i = 0; i < data.length; i++) data[i] = data[i]! * scale;
  return { bytes: serializeModel(buildPolicyGraph(config, w)), manifest: manifestForConfig(config, TEST_IDS, { name: "random-test" }) };
}

/**
 * A model directory (manifest.json, model.onnx, tokenizer.json) with random weights for the
 * given tokenizer: exercises the whole load path before a trained model exists.
 */
export async function writeRandomModelDir(
  dir: string,
  tokenizerPath: string,
  config: Omit<PolicyModelConfig, "vocabSize">,
  seed = 1,
): Promise<string> {
  const tok = await loadTokenizer(tokenizerPath, { requireSpecial: ["mask", "pad", "eos"] });
  const full: PolicyModelConfig = { ...config, vocabSize: tok.vocabSize };
  await mkdir(dir, { recursive: true });
  await copyFile(tokenizerPath, join(dir, "tokenizer.json"));
  const manifest = manifestForConfig(
    full,
    { mask: tok.specialIds.mask!, pad: tok.specialIds.pad!, eos: tok.specialIds.eos! },
    { name: "random-test" },
  );
  await writeModelDir(dir, serializeModel(buildPolicyGraph(full, initWeights(full, seed))), manifest);
  return dir;
}
