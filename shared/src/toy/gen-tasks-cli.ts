import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { writeTrainedTokenizer } from "../tokenizer/train-toy-tokenizer.js";
import { DEFAULT_TOY_SUITE, TOY_SPLITS } from "./generate-suite.js";
import { writeToySuite } from "./write-suite.js";

export const GEN_TASKS_USAGE = `usage: rlmesh gen-tasks [--out DIR] [--seed S] [--train-size N] [--test-size N] [--tokenizer FILE] [--json]
  Writes DIR/{${TOY_SPLITS.join(",")}}.jsonl (default DIR datasets/toy, seed ${DEFAULT_TOY_SUITE.seed}).
  --tokenizer FILE also trains the byte-level BPE on the train split and writes FILE
  (the shipped one is models/tiny-coder/tokenizer.json; retraining it invalidates the model).`;

/** `rlmesh gen-tasks`: regenerates the toy suite (and optionally the tokenizer); prints a summary. */
export async function runGenTasks(argv: readonly string[], out: (line: string) => void = console.log): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      out: { type: "string", default: "datasets/toy" },
      seed: { type: "string", default: DEFAULT_TOY_SUITE.seed },
      "train-size": { type: "string" },
      "test-size": { type: "string" },
      tokenizer: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    out(GEN_TASKS_USAGE);
    return;
  }
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return n;
  };
  const testSize = int("test-size", values["test-size"]);
  const started = Date.now();
  const { suite, files } = await writeToySuite(resolve(values.out), {
    seed: values.seed,
    ...(int("train-size", values["train-size"]) !== undefined ? { trainSize: int("train-size", values["train-size"]) } : {}),
    ...(testSize !== undefined ? { testInstancesSize: testSize, testCompositionalSize: testSize } : {}),
  });
  const summary: Record<string, unknown> = {
    seed: values.seed,
    rows: Object.fromEntries(TOY_SPLITS.map((s) => [s, suite[s].length])),
    files,
    held_out_pairs: suite.heldPairs,
    shortfalls: suite.shortfalls,
  };
  if (values.tokenizer) {
    const json = await writeTrainedTokenizer(suite.train, resolve(values.tokenizer));
    summary.tokenizer = {
      file: resolve(values.tokenizer),
      vocab_size: Object.keys(json.model.vocab).length,
      merges: json.model.merges.length,
    };
  }
  const seconds = (Date.now() - started) / 1000;
  summary.seconds = seconds;
  if (values.json) {
    out(JSON.stringify(summary));
  } else {
    for (const s of TOY_SPLITS) out(`${s}: ${suite[s].length} rows -> ${files[s]}`);
    for (const f of suite.shortfalls) out(`warning: ${f.family} has only ${f.got} distinct ${f.split} tasks (wanted ${f.wanted})`);
    if (summary.tokenizer) out(`tokenizer: ${JSON.stringify(summary.tokenizer)}`);
    out(`done in ${seconds} s`);
  }
}

// Runnable directly: node shared/dist/toy/gen-tasks-cli.js [options]
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runGenTasks(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    console.error(GEN_TASKS_USAGE);
    process.exitCode = 1;
  });
}
