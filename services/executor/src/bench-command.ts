import { loadDataset } from "@rlmesh/shared/datasets/index";
import { MBPP_PATH } from "@rlmesh/shared/repo-paths";
import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { benchSandbox } from "./sandbox-bench.js";

export const BENCH_SANDBOX_USAGE = "usage: rlmesh bench sandbox [--dataset MBPP.jsonl] [--concurrency N] [--cold-sample N] [--json]";

/** The repository's MBPP copy (datasets/mbpp), unless RLMESH_MBPP_PATH says otherwise. */
export function defaultMbppPath(): string {
  return process.env.RLMESH_MBPP_PATH || MBPP_PATH;
}

/**
 * `rlmesh bench sandbox`: executor executions/s on the MBPP references against a bare python3
 * subprocess and a cold container per candidate, in the same run. With --json the last stdout
 * line holds executor_per_s, bare_subprocess_per_s, cold_docker_run_per_s, ratio_vs_bare,
 * ratio_vs_cold. (argv excludes "bench sandbox".)
 */
export async function benchSandboxCommand(
  argv: string[],
  out: (line: string) => void = (l) => process.stdout.write(l + "\n"),
): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  let concurrency: number;
  let coldSample: number;
  try {
    flags = parseFlags(argv, { values: ["dataset", "concurrency", "cold-sample"], switches: ["json", "help"] });
    if (flags.switches.has("help")) {
      out(BENCH_SANDBOX_USAGE);
      return 0;
    }
    concurrency = positiveInt("concurrency", flags.values.get("concurrency"), 2);
    coldSample = positiveInt("cold-sample", flags.values.get("cold-sample"), 16);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`rlmesh bench sandbox: ${err.message}\n${BENCH_SANDBOX_USAGE}\n`);
    return 2;
  }
  try {
    const rows = loadDataset(flags.values.get("dataset") ?? defaultMbppPath(), "mbpp");
    const r = await benchSandbox(rows, { concurrency, coldSample });
    if (flags.switches.has("json")) {
      out(JSON.stringify(r));
    } else {
      out(`candidates: ${r.candidates} MBPP references, concurrency ${r.concurrency} (cold sample ${r.cold_sample})`);
      out(`executor (queue -> warm pool -> fork server): ${r.executor_per_s}/s (${r.executor_passed} passed)`);
      out(`bare python3 subprocess, no isolation:      ${r.bare_subprocess_per_s}/s (${r.bare_passed} passed)`);
      out(`cold container per candidate:               ${r.cold_docker_run_per_s}/s (${r.cold_passed} passed)`);
      out(`ratio vs bare: ${r.ratio_vs_bare}  ratio vs cold: ${r.ratio_vs_cold}`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`rlmesh bench sandbox: ${(err as Error).message}\n`);
    return 1;
  }
}
