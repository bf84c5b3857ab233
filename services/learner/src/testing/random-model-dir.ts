import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";

import { buildPolicyGraph, CI_CONFIG, initWeights, manifestForConfig, serializeModel, TINY_CONFIG, writeModelDir } from "@rlmesh/shared/model/index";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { DEFAULT_MODEL_DIR as SHIPPED_MODEL_DIR } from "@rlmesh/shared/repo-paths";


/**
 * A model directory with randomly initialised weights (tests, and the benchmark before the
 * shipped model is trained): the shipped tokenizer, the `ci` or `tiny` architecture, same seed =
 * same bytes. Returns the directory.
 */
export async function writeRandomModelDir(dir: string, preset: "ci" | "tiny", seed = 1, maxSeqLen?: number): Promise<string> {
  const tokenizerPath = join(SHIPPED_MODEL_DIR, "tokenizer.json");
  const tok = await loadTokenizer(tokenizerPath, { requireSpecial: ["mask", "pad", "eos"] });
  const base = preset === "ci" ? CI_CONFIG : TINY_CONFIG;
  const config = { ...base, vocabSize: tok.vocabSize, maxSeqLen: maxSeqLen ?? base.maxSeqLen };
  await mkdir(dir, { recursive: true });
  await copyFile(tokenizerPath, join(dir, "tokenizer.json"));
  const ids = { mask: tok.specialIds.mask!, pad: tok.specialIds.pad!, eos: tok.specialIds.eos! };
  const manifest = manifestForConfig(config, ids, {
    name: `random-${preset}`,
    special_tokens: { mask: "<|mask|>", pad: "<|pad|>", eos: "<|eos|>" },
    training: { seed, random_init: true },
  });
  await writeModelDir(dir, serializeModel(buildPolicyGraph(config, initWeights(config, seed))), manifest);
  return dir;
}
