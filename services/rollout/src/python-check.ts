/**
 * Fallback pass/fail check with the host's plain `python3` (no sandbox, no isolation): only
 * for the decode benchmark when the executor's sandboxed eval is not available. Handles
 * assert and stdio tests; call tests count as failures.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CanonicalRow, TestSpec } from "@rlmesh/shared/datasets/index";
import { entryPoints, selectProgram } from "@rlmesh/shared/reward/program";

/** Wall-clock limit per python3 run. */
export const PYTHON_CHECK_TIMEOUT_MS = 5000;

/** The program the reward path would run: the last block that defines the task's entry point. */
export function extractCode(response: string, tests?: TestSpec): string | null {
  return selectProgram(response, tests ? entryPoints(tests) : []);
}

function run(file: string, input: string): { ok: boolean; stdout: string } {
  const r = spawnSync("python3", [file], { input, timeout: PYTHON_CHECK_TIMEOUT_MS, encoding: "utf8", maxBuffer: 1 << 20 });
  return { ok: r.status === 0 && !r.error, stdout: r.stdout ?? "" };
}

const normalize = (s: string) =>
  s
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n")
    .trimEnd();

/** True when the response has a code block and every test passes. */
export function passesWithPython(row: CanonicalRow, response: string): boolean {
  const code = extractCode(response, row.tests);
  if (code === null) return false;
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-bench-"));
  try {
    const file = join(dir, "main.py");
    const t = row.tests;
    if (t.kind === "assert") {
      if (t.tests.length === 0) return false;
      const entry = t.entry_point ? `\nentry_point = ${t.entry_point}\n` : "\n";
      writeFileSync(file, `${code}\n${entry}${t.setup ?? ""}\n${t.tests.join("\n")}\n`);
      return run(file, "").ok;
    }
    if (t.kind === "stdio") {
      if (t.cases.length === 0) return false;
      writeFileSync(file, code);
      return t.cases.every((c) => {
        const r = run(file, c.input);
        return r.ok && normalize(r.stdout) === normalize(c.output);
      });
    }
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
