import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ToySuite, ToySuiteOptions } from "./generate-suite.js";
import { TOY_SPLITS, generateToySuite, toJsonl } from "./generate-suite.js";

export interface WrittenSuite {
  suite: ToySuite;
  /** Split name -> file written. */
  files: Record<string, string>;
}

/** Generates the suite and writes `<dir>/<split>.jsonl` for each split (atomically, via rename). */
export async function writeToySuite(dir: string, options: ToySuiteOptions = {}): Promise<WrittenSuite> {
  const suite = generateToySuite(options);
  await mkdir(dir, { recursive: true });
  const files: Record<string, string> = {};
  for (const split of TOY_SPLITS) {
    const file = join(dir, `${split}.jsonl`);
    await writeFile(`${file}.tmp`, toJsonl(suite[split]));
    await rename(`${file}.tmp`, file);
    files[split] = file;
  }
  return { suite, files };
}
