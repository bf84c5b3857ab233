import type { CanonicalRow } from "./canonical-row.js";
import { RowFields } from "./row-fields.js";

/**
 * HumanEval row (`task_id`, `prompt`, `entry_point`, `test`, `canonical_solution`): the test
 * code defines `check(candidate)`; one test calls it with the entry point.
 */
export function fromHumanEval(row: Record<string, unknown>, line: number, file?: string): CanonicalRow {
  const f = new RowFields(row, line, file);
  const taskId = f.id("task_id");
  const prompt = f.string("prompt");
  const entryPoint = f.string("entry_point");
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(entryPoint)) f.fail("entry_point", `not a Python identifier: ${JSON.stringify(entryPoint)}`);
  const test = f.string("test");
  if (!/\bdef\s+check\s*\(/.test(test)) f.fail("test", "does not define check(candidate)");
  const solution = f.optionalString("canonical_solution");
  return {
    task_id: taskId,
    prompt,
    tests: { kind: "assert", setup: test, tests: [`check(${entryPoint})`], entry_point: entryPoint },
    ...(solution !== undefined ? { reference: prompt + solution } : {}),
    source: "humaneval",
  };
}
