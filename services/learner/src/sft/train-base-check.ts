import { spawn } from "node:child_process";
import { entryPoints, selectProgram } from "@rlmesh/shared/reward/program";

/**
 * Our own quick check of a generated response against a toy row's tests with plain python3 —
 * used only by train-base to report pass@1 while training. It is NOT a sandbox: the executor
 * service (Docker, no network, limits) is the real reward path.
 */

/** The canonical TestSpec (shared/src/datasets/canonical-row.ts) or the older per-test array form. */
export type CheckTests =
  | { kind: "assert"; setup?: string; tests: string[]; entry_point?: string }
  | { kind: "call"; fn: string; cases: { args: unknown[]; expected: unknown }[] }
  | { kind: "stdio"; cases: { input: string; output: string }[] }
  | LegacyTest[];

type LegacyTest =
  | { kind: "assert"; code: string }
  | { kind: "stdio"; input: string; output: string }
  | { kind: "call"; fn: string; args: unknown[]; expected: unknown };

export interface CheckRow {
  setup?: string;
  tests: CheckTests;
}

interface Normalized {
  setup: string;
  asserts: string[];
  stdio: { input: string; output: string }[];
}

function normalize(row: CheckRow): Normalized {
  const n: Normalized = { setup: row.setup ?? "", asserts: [], stdio: [] };
  const call = (fn: string, args: unknown[], expected: unknown) =>
    `import json as _j\nassert ${fn}(*_j.loads(${JSON.stringify(JSON.stringify(args))})) == _j.loads(${JSON.stringify(JSON.stringify(expected))})`;
  const t = row.tests;
  if (Array.isArray(t)) {
    for (const x of t) {
      if (x.kind === "assert") n.asserts.push(x.code);
      else if (x.kind === "call") n.asserts.push(call(x.fn, x.args, x.expected));
      else n.stdio.push({ input: x.input, output: x.output });
    }
  } else if (t.kind === "assert") {
    if (t.setup) n.setup += "\n" + t.setup;
    if (t.entry_point) n.asserts.push(`entry_point = ${t.entry_point}`);
    n.asserts.push(...t.tests);
  } else if (t.kind === "call") for (const c of t.cases) n.asserts.push(call(t.fn, c.args, c.expected));
  else n.stdio.push(...t.cases);
  return n;
}

export const CHECK_TIMEOUT_MS = 5000;
/** The program the reward path would run: the last block that defines the task's entry point. */
export function extractCode(response: string, tests?: CheckTests): string | null {
  const canonical = tests && !Array.isArray(tests) ? tests : undefined;
  return selectProgram(response, canonical ? entryPoints(canonical) : []);
}

/** True when the response has a code block and every test passes. */
export async function passesTests(row: CheckRow, response: string): Promise<boolean> {
  const code = extractCode(response, row.tests);
  if (code === null) return false;
  const n = normalize(row);
  for (const c of n.stdio) {
    const r = await runPython(`${n.setup}\n${code}\n`, c.input);
    if (r.code !== 0 || r.stdout.trimEnd() !== c.output.trimEnd()) return false;
  }
  if (n.asserts.length === 0) return n.stdio.length > 0;
  const r = await runPython(`${n.setup}\n${code}\n${n.asserts.join("\n")}\n`, "");
  return r.code === 0;
}

function runPython(source: string, stdin: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn("python3", ["-c", source], { stdio: ["pipe", "pipe", "ignore"], timeout: CHECK_TIMEOUT_MS });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      if (stdout.length < 1 << 16) stdout += d.toString();
    });
    child.on("error", () => resolve({ code: -1, stdout }));
    child.on("close", (code) => resolve({ code, stdout }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}
