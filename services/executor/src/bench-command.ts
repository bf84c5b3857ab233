import { loadDataset } from "@rlmesh/shared/datasets/index";
import { MBPP_PATH } from "@rlmesh/shared/repo-paths";
import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { benchSandbox } from "./sandbox-bench.js";
import { SANDBOX_BACKENDS, type SandboxBackendName } from "./sandbox-backend.js";

export const BENCH_SANDBOX_USAGE =
  "usage: rlmesh bench sandbox [--dataset MBPP.jsonl] [--concurrency N] [--cold-sample N] [--backends docker,bwrap] [--json]";

/** The repository's MBPP copy (datasets/mbpp), unless RLMESH_MBPP_PATH says otherwise. */
export function defaultMbppPath(): string {
  return process.env.RLMESH_MBPP_PATH || MBPP_PATH;
}

/**
 * `rlmesh bench sandbox`: executions/s on the MBPP references for each sandbox backend (Docker
 * and bwrap by default: through the queue and executor, and the warm pool alone) against a bare
 * python3 subprocess and a cold container per candidate, in the same run, plus a sequential
 * profile (judge time vs fork/cleanup/protocol overhead per candidate). With --json the last
 * stdout line holds executor_per_s, bare_subprocess_per_s, cold_docker_run_per_s,
 * ratio_vs_bare, ratio_vs_cold (Docker's) and `backends` with each backend's numbers.
 * (argv excludes "bench sandbox".)
 */
export async function benchSandboxCommand(
  argv: string[],
  out: (line: string) => void = (l) => process.stdout.write(l + "\n"),
): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  let concurrency: number;
  let coldSample: number;
  let backends: SandboxBackendName[];
  try {
    flags = parseFlags(argv, { values: ["dataset", "concurrency", "cold-sample", "backends"], switches: ["json", "help"] });
    if (flags.switches.has("help")) {
      out(BENCH_SANDBOX_USAGE);
      return 0;
    }
    concurrency = positiveInt("concurrency", flags.values.get("concurrency"), 2);
    coldSample = positiveInt("cold-sample", flags.values.get("cold-sample"), 16);
    backends = (flags.values.get("backends") ?? SANDBOX_BACKENDS.join(",")).split(",").map((b) => b.trim()) as SandboxBackendName[];
    for (const b of backends)
      if (!(SANDBOX_BACKENDS as readonly string[]).includes(b)) throw new UsageError(`--backends: unknown backend ${b} (${SANDBOX_BACKENDS.join(", ")})`);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`rlmesh bench sandbox: ${err.message}\n${BENCH_SANDBOX_USAGE}\n`);
    return 2;
  }
  try {
    const rows = loadDataset(flags.values.get("dataset") ?? defaultMbppPath(), "mbpp");
    const r = await benchSandbox(rows, { concurrency, coldSample, backends });
    if (flags.switches.has("json")) {
      out(JSON.stringify(r));
    } else {
      out(`candidates: ${r.candidates} MBPP references, concurrency ${r.concurrency}, ${r.cpus} CPUs, load ${r.loadavg[0]} -> ${r.loadavg[1]}`);
      out(
        `bare python3 subprocess, no isolation:    ${r.bare_subprocess_per_s}/s (${r.bare_passed} passed; ${r.bare_sequential_ms_per_candidate} ms each, sequential; CPU ${r.bare_sequential_cpu_ms_per_candidate} ms each)`,
      );
      for (const [name, b] of Object.entries(r.backends)) {
        out(`${name.padEnd(6)} executor (queue -> pool -> fork server): ${b.executor_per_s}/s (${b.executor_passed} passed)  ratio vs bare ${b.ratio_vs_bare}`);
        out(`${name.padEnd(6)} warm pool alone (no queue):              ${b.pool_per_s}/s (${b.pool_passed} passed)  ratio vs bare ${b.pool_ratio_vs_bare}`);
        out(`${name.padEnd(6)} per candidate, sequential: ${b.sequential_ms_per_candidate} ms = judge ${b.judge_ms_per_candidate} + fork/cleanup/protocol ${b.overhead_ms_per_candidate}; sandbox start ${b.start_ms} ms`);
        out(`${name.padEnd(6)} CPU per candidate, sequential (sandbox + executor): ${b.sequential_cpu_ms_per_candidate} ms  bare/this ${b.cpu_ratio_vs_bare}`);
      }
      if (r.cold_sample > 0) out(`cold container per candidate:               ${r.cold_docker_run_per_s}/s (${r.cold_passed}/${r.cold_sample} passed)  docker executor vs cold ${r.ratio_vs_cold}`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`rlmesh bench sandbox: ${(err as Error).message}\n`);
    return 1;
  }
}
