import { DATASET_FORMATS, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { runEval } from "./run-eval.js";

export const EVAL_USAGE =
  "usage: rlmesh eval --dataset FILE [--format auto|humaneval|mbpp|lcb|rlmesh] [--solutions canonical|RESPONSES.jsonl] [--concurrency N] [--json]";

/**
 * `rlmesh eval`: scores every dataset row through queue -> executor -> Docker and prints a
 * summary; with --json the last stdout line is the summary object. Returns the exit code
 * (0: ran, whatever the rewards; 2: bad usage or input; 1: infrastructure missing).
 */
export async function evalCommand(argv: string[], out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  let format: DatasetFormat;
  let concurrency: number;
  try {
    flags = parseFlags(argv, { values: ["dataset", "format", "solutions", "concurrency"], switches: ["json", "help"] });
    if (flags.switches.has("help")) {
      out(EVAL_USAGE);
      return 0;
    }
    if (!flags.values.has("dataset")) throw new UsageError("--dataset is required");
    const f = flags.values.get("format") ?? "auto";
    if (!(DATASET_FORMATS as readonly string[]).includes(f)) throw new UsageError(`--format must be one of ${DATASET_FORMATS.join("|")}`);
    format = f as DatasetFormat;
    concurrency = positiveInt("concurrency", flags.values.get("concurrency"), 2);
  } catch (err) {
    process.stderr.write(`rlmesh eval: ${(err as Error).message}\n${EVAL_USAGE}\n`);
    return 2;
  }
  try {
    const report = await runEval({
      dataset: flags.values.get("dataset")!,
      format,
      solutions: flags.values.get("solutions") ?? "canonical",
      concurrency,
    });
    const s = report.summary;
    if (!flags.switches.has("json")) {
      for (const row of report.rows) {
        if (row.result.reward !== 1)
          out(`  ${row.task_id}: ${row.result.status} (${row.result.tests_passed}/${row.result.tests_total}) ${row.result.reason}`);
      }
      const statuses = Object.entries(s.by_status)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      out(`${s.passed}/${s.total} passed (${statuses}) in ${s.seconds}s, ${s.executions_per_second} executions/s`);
    } else {
      out(JSON.stringify(s));
    }
    return 0;
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`rlmesh eval: ${e.message}\n`);
    return e.name === "DatasetError" || e.name === "EvalError" ? 2 : 1;
  }
}
