import { DATASET_FORMATS, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { MAX_REWARD_BATCH } from "@rlmesh/shared/reward/reward-jobs";
import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { parseKs } from "./pass-at-k.js";
import { DEFAULT_KS, type EvalSummary, runEval, writeResults } from "./run-eval.js";

export const EVAL_USAGE =
  "usage: rlmesh eval --dataset FILE [--format auto|humaneval|mbpp|lcb|rlmesh] [--solutions canonical|SAMPLES.jsonl] [--k 1,10,100] [--results OUT.jsonl] [--concurrency N] [--batch N] [--json]";

/** Exit code of an eval that ran but could not score every sample. */
export const EXIT_UNSCORED = 3;
/** Failing samples listed in the text report (all of them go to --results). */
const FAILURES_LISTED = 20;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The pass@k line(s) of the text report: the ks reported, then the ones skipped and why. */
export function formatPassAtK(s: EvalSummary): string[] {
  const got = Object.entries(s.pass_at_k)
    .map(([k, v]) => `pass@${k} ${pct(v)}`)
    .join(", ");
  const n = s.samples_per_task.min === s.samples_per_task.max ? `${s.samples_per_task.min}` : `${s.samples_per_task.min}-${s.samples_per_task.max}`;
  const out = [`${got || "no pass@k"} over ${s.tasks} task(s), n = ${n} sample(s) per task`];
  for (const { k, reason } of s.pass_at_k_skipped) out.push(`  pass@${k} not reported: ${reason}`);
  return out;
}

/**
 * `rlmesh eval`: scores every sample (a dataset's references, or a samples file with any number
 * of samples per task) through queue -> executor -> Docker and prints a summary with pass@k;
 * with --json the last stdout line is the summary object, with --results one JSON line per
 * sample goes to a file. Warnings (unmatched task ids, tasks without samples) go to stderr.
 * Returns the exit code (0: ran, whatever the rewards; 2: bad usage or input, no sample
 * naming a dataset task included; 1: infrastructure missing; 3: ran, but the infrastructure could
 * not score some samples — they are left out of pass@k and named in a warning).
 */
export async function evalCommand(argv: string[], out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  let format: DatasetFormat;
  let concurrency: number;
  let batchSize: number;
  let ks: number[];
  try {
    flags = parseFlags(argv, { values: ["dataset", "format", "solutions", "concurrency", "batch", "k", "results"], switches: ["json", "help"] });
    if (flags.switches.has("help")) {
      out(EVAL_USAGE);
      return 0;
    }
    if (!flags.values.has("dataset")) throw new UsageError("--dataset is required");
    const f = flags.values.get("format") ?? "auto";
    if (!(DATASET_FORMATS as readonly string[]).includes(f)) throw new UsageError(`--format must be one of ${DATASET_FORMATS.join("|")}`);
    format = f as DatasetFormat;
    concurrency = positiveInt("concurrency", flags.values.get("concurrency"), 2);
    batchSize = positiveInt("batch", flags.values.get("batch"), 1, MAX_REWARD_BATCH);
    try {
      ks = flags.values.has("k") ? parseKs(flags.values.get("k")!) : DEFAULT_KS;
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
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
      batchSize,
      ks,
    });
    for (const w of report.warnings) process.stderr.write(`rlmesh eval: warning: ${w}\n`);
    const resultsPath = flags.values.get("results");
    if (resultsPath) writeResults(resultsPath, report.rows);
    const s = report.summary;
    if (!flags.switches.has("json")) {
      const failing = report.rows.filter((r) => r.result.reward !== 1 && !r.unscored);
      for (const row of failing.slice(0, FAILURES_LISTED))
        out(`  ${row.task_id}#${row.sample}: ${row.result.status} (${row.result.tests_passed}/${row.result.tests_total}) ${row.result.reason}`);
      if (failing.length > FAILURES_LISTED) out(`  … ${failing.length - FAILURES_LISTED} more failing samples${resultsPath ? "" : " (--results FILE lists every sample)"}`);
      const statuses = Object.entries(s.by_status)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      out(`${s.passed}/${s.total} samples passed (${statuses}) in ${s.seconds}s, ${s.executions_per_second} executions/s`);
      for (const l of formatPassAtK(s)) out(l);
      if (s.unscored_samples > 0) out(`${s.unscored_samples} sample(s) unscored (infrastructure failure), left out of the counts above`);
      if (resultsPath) out(`per-sample results: ${resultsPath} (${report.rows.length} lines)`);
    } else {
      out(JSON.stringify(s));
    }
    return s.unscored_samples > 0 ? EXIT_UNSCORED : 0;
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`rlmesh eval: ${e.message}\n`);
    return e.name === "DatasetError" || e.name === "EvalError" ? 2 : 1;
  }
}
