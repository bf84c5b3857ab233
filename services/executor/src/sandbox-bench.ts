import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import { asResponse } from "./code-block.js";
import { DockerSandbox } from "./docker-sandbox.js";
import { runEval } from "./run-eval.js";
import { DEFAULT_CONTAINER_LIMITS, DEFAULT_SANDBOX_LIMITS } from "./sandbox-limits.js";
import { scoreCandidate } from "./score-candidate.js";

/**
 * Limits of every path in the bench: generous, so that a slow reference (MBPP 123 needs ~3 s
 * of CPU per test) on a busy machine measures throughput rather than a timeout.
 */
export const BENCH_LIMITS = { ...DEFAULT_SANDBOX_LIMITS, timeout_ms_per_test: 60_000, total_timeout_ms: 120_000 };

export interface SandboxBenchResult {
  executor_per_s: number;
  bare_subprocess_per_s: number;
  cold_docker_run_per_s: number;
  ratio_vs_bare: number;
  ratio_vs_cold: number;
  candidates: number;
  cold_sample: number;
  concurrency: number;
  executor_passed: number;
  bare_passed: number;
  cold_passed: number;
}

/** Python used for the unsandboxed baseline (the system one; pyenv shims add start-up time). */
export function benchPython(): string {
  return existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

/** An assert-style row as one plain script: program, test imports/setup, tests. */
export function plainScript(row: CanonicalRow): string {
  if (row.tests.kind !== "assert" || row.reference === undefined)
    throw new Error(`row ${row.task_id} is not an assert-style row with a reference`);
  return [row.reference, row.tests.setup ?? "", ...row.tests.tests].join("\n") + "\n";
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

function runPython(script: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn(benchPython(), ["-"], { stdio: ["pipe", "ignore", "ignore"] });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (code) => {
      clearTimeout(t);
      resolve(code === 0);
    });
    p.stdin.end(script);
  });
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Executions per second, same rows and concurrency: the executor (queue -> warm pool -> fork
 * server; pool warm-up excluded), a bare `python3` per candidate (no isolation at all), and a
 * cold container per candidate (create + start + run + remove, what `docker run --rm` does).
 */
export async function benchSandbox(rows: CanonicalRow[], opts: { concurrency: number; coldSample: number }): Promise<SandboxBenchResult> {
  const limits = BENCH_LIMITS;
  const eval_ = await runEval({ dataset: rows, solutions: "canonical", concurrency: opts.concurrency, limits });
  const executorPerS = eval_.summary.executions_per_second;

  const t0 = process.hrtime.bigint();
  const bare = await mapLimit(rows, opts.concurrency, (row) => runPython(plainScript(row), limits.total_timeout_ms));
  const barePerS = rows.length / seconds(t0);

  const docker = new Docker();
  const owner = `bench-${process.pid}-${randomBytes(3).toString("hex")}`;
  const sample = rows.slice(0, opts.coldSample);
  const t1 = process.hrtime.bigint();
  const cold = await mapLimit(sample, opts.concurrency, async (row) => {
    const sandbox = await DockerSandbox.start({ docker, owner, limits: DEFAULT_CONTAINER_LIMITS });
    try {
      const r = await scoreCandidate(
        sandbox,
        { response: asResponse(row.reference ?? ""), tests: row.tests },
        { limits, container: DEFAULT_CONTAINER_LIMITS },
      );
      return r.reward === 1;
    } finally {
      await sandbox.destroy();
    }
  });
  const coldPerS = sample.length / seconds(t1);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    executor_per_s: round(executorPerS),
    bare_subprocess_per_s: round(barePerS),
    cold_docker_run_per_s: round(coldPerS),
    ratio_vs_bare: round(executorPerS / barePerS),
    ratio_vs_cold: round(executorPerS / coldPerS),
    candidates: rows.length,
    cold_sample: sample.length,
    concurrency: opts.concurrency,
    executor_passed: eval_.summary.passed,
    bare_passed: bare.filter(Boolean).length,
    cold_passed: cold.filter(Boolean).length,
  };
}
