import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { TaskRow } from "../toy/task-row.js";
import type { TrainBpeOptions } from "./train-bpe.js";
import { trainBpe } from "./train-bpe.js";
import type { BpeTokenizerJson } from "./tokenizer-json.js";

/** The text a tiny coder sees: every prompt and reference response of the rows. */
export function tokenizerCorpus(rows: readonly TaskRow[]): string[] {
  return rows.flatMap((r) => [r.prompt, r.reference]);
}

/** Trains the tiny coder's BPE on `rows` and writes tokenizer.json (atomically). */
export async function writeTrainedTokenizer(
  rows: readonly TaskRow[],
  file: string,
  options: TrainBpeOptions = {},
): Promise<BpeTokenizerJson> {
  const json = trainBpe(tokenizerCorpus(rows), options);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, JSON.stringify(json, null, 1) + "\n");
  await rename(`${file}.tmp`, file);
  return json;
}
