import { loadDataset } from "@rlmesh/shared/datasets/index";
import { MBPP_PATH } from "@rlmesh/shared/repo-paths";
import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { benchSandbox } from "./sandbox-bench.js";
import { DEFAULT_PREFETCH } from "./executor.js";
import { SANDBOX_BACKENDS, type SandboxBackendName } from "./sandbox-backend.js";
import { MAX_REWARD_BATCH } from "@rlmesh/shared/reward/reward-jobs";

/** A comma-separated list of integers in [min, max]; UsageError naming the flag otherwise. */
function intList(flag: string, value: string, min: number, max: number): number[] {
  return value.split(",").map((p) => {
    const n = Number(p.trim());
    if (p.trim() === "" || !Number.isInteger(n) || n < min || n > max)
      throw new UsageError(`--${flag}: expected integers ${max === Infinity ? `>= ${min}` : `in ${min}..${max}`} separated by commas, got ${JSON.stringify(p)}`);
    return n;
  });
}

export const BENCH_SANDBOX_USAGE =
  "usage: rlmesh bench sandbox [--dataset MBPP.jsonl] [--exclude-tasks ID,...] [--concurrency N] [--prefetch N,...] [--batch N,...] [--rounds N] [--cold-sample N] [--backends docker,bwrap] [--json]";

/** The repository's MBPP copy (datasets/mbpp), unless RLMESH_MBPP_PATH says otherwise. */
export function defaultMbppPath(): string {
  return process.env.RLMESH_MBPP_PATH || MBPP_PATH;
}

/**
 * `rlmesh bench sandbox`: executions/s on the MBPP references for each sandbox backend (Docker
 * and bwrap by default: through the queue and executor, and the warm pool alone) against a bare
 * python3 subprocess and a cold container per candidate, in the same run, plus a sequential
 * profile (judge time vs fork/cleanup/protocol overhead per candidate). --prefetch 0,1 measures
 * the executor at each prefetch setting in the same run (the first is the headline); --batch 1,8
 * does the same for candidates per reward job (batch jobs; each with each prefetch); --rounds N
 * repeats every path N times in rotated order; --exclude-tasks leaves rows out. With --json the last
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
  let prefetch: number[];
  let batch: number[];
  let rounds: number;
  let exclude: string[];
  try {
    flags = parseFlags(argv, { values: ["dataset", "concurrency", "cold-sample", "backends", "prefetch", "batch", "rounds", "exclude-tasks"], switches: ["json", "help"] });
    if (flags.switches.has("help")) {
      out(BENCH_SANDBOX_USAGE);
      return 0;
    }
    concurrency = positiveInt("concurrency", flags.values.get("concurrency"), 2);
    coldSample = positiveInt("cold-sample", flags.values.get("cold-sample"), 16);
    rounds = positiveInt("rounds", flags.values.get("rounds"), 1);
    prefetch = intList("prefetch", flags.values.get("prefetch") ?? String(DEFAULT_PREFETCH), 0, Infinity);
    batch = intList("batch", flags.values.get("batch") ?? "1", 1, MAX_REWARD_BATCH);
    exclude = (flags.values.get("exclude-tasks") ?? "").split(",").map((t) => t.trim()).filter((t) => t !== "");
    backends = (flags.values.get("backends") ?? SANDBOX_BACKENDS.join(",")).split(",").map((b) => b.trim()) as SandboxBackendName[];
    for (const b of backends)
      if (!(SANDBOX_BACKENDS as readonly string[]).includes(b)) throw new UsageError(`--backends: unknown backend ${b} (${SANDBOX_BACKENDS.join(", ")})`);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`rlmesh bench sandbox: ${err.message}\n${BENCH_SANDBOX_USAGE}\n`);
    return 2;
  }
  try {
    const all = loadDataset(flags.values.get("dataset") ?? defaultMbppPath(), "mbpp");
    const unknown = exclude.filter((id) => !all.some((r) => r.task_id === id));
    if (unknown.length > 0) throw new Error(`--exclude-tasks: no task ${unknown.map((id) => JSON.stringify(id)).join(", ")} in the dataset`);
    const rows = all.filter((r) => !exclude.includes(r.task_id));
    const r = await benchSandbox(rows, { concurrency, coldSample, backends, prefetch, batch, rounds });
    if (flags.switches.has("json")) {
      out(JSON.stringify(r));
    } else {
      out(
        `candidates: ${r.candidates} MBPP references${exclude.length ? ` (without ${exclude.join(", ")})` : ""} x ${r.rounds} round(s), concurrency ${r.concurrency}, ${r.cpus} CPUs, load ${r.loadavg[0]} -> ${r.loadavg[1]}`,
      );
      out(
        `bare python3 subprocess, no isolation:    ${r.bare_subprocess_per_s}/s (${r.bare_passed} passed; ${r.bare_sequential_ms_per_candidate} ms each, sequential; CPU ${r.bare_sequential_cpu_ms_per_candidate} ms each)`,
      );
      for (const [name, b] of Object.entries(r.backends)) {
        for (const e of b.executors)
          out(
            `${name.padEnd(6)} executor, prefetch ${e.prefetch}/sandbox, batch ${e.batch} (queue -> pool -> fork server): ${e.per_s}/s (${e.passed} passed)  ratio vs bare ${e.ratio_vs_bare}; per candidate: CPU node ${e.node_cpu_ms_per_candidate} ms + redis ${e.redis_cpu_ms_per_candidate} ms, sandbox idle ${e.sandbox_idle_ms_per_candidate} ms`,
          );
        out(`${name.padEnd(6)} warm pool alone (no queue):              ${b.pool_per_s}/s (${b.pool_passed} passed)  ratio vs bare ${b.pool_ratio_vs_bare}; per candidate: CPU node ${b.pool_node_cpu_ms_per_candidate} ms, sandbox idle ${b.pool_sandbox_idle_ms_per_candidate} ms`);
        out(`${name.padEnd(6)} per candidate, sequential: ${b.sequential_ms_per_candidate} ms = judge ${b.judge_ms_per_candidate} + fork/cleanup/protocol ${b.overhead_ms_per_candidate}; sandbox start ${b.start_ms} ms`);
        out(`${name.padEnd(6)} CPU per candidate, sequential (sandbox + executor): ${b.sequential_cpu_ms_per_candidate} ms  bare/this ${b.cpu_ratio_vs_bare}`);
        const roles = b.sequential_cpu_roles_ms;
        if (roles)
          out(
            `${name.padEnd(6)}   by process: candidate ${roles.candidate} ms, PID 1 ${roles.pid1}, supervisor ${roles.supervisor}, judge ${roles.judge}, executor (node) ${b.sequential_node_cpu_ms_per_candidate}`,
          );
        const faults = b.sequential_faults_roles;
        if (faults)
          out(`${name.padEnd(6)}   page faults: candidate ${faults.candidate}, PID 1 ${faults.pid1}, supervisor ${faults.supervisor}, judge ${faults.judge}`);
      }
      if (r.cold_sample > 0) out(`cold container per candidate:               ${r.cold_docker_run_per_s}/s (${r.cold_passed}/${r.cold_sample} passed)  docker executor vs cold ${r.ratio_vs_cold}`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`rlmesh bench sandbox: ${(err as Error).message}\n`);
    return 1;
  }
}
