import type { CanonicalRow } from "./canonical-row.js";
import { RowFields } from "./row-fields.js";

/**
 * MBPP row (original: `text`; sanitized: `prompt`; both: `task_id`, `code`, `test_list`,
 * optional `test_imports`): each entry of test_list is one assert-style test.
 */
export function fromMbpp(row: Record<string, unknown>, line: number, file?: string): CanonicalRow {
  const f = new RowFields(row, line, file);
  const taskId = f.id("task_id");
  const prompt = f.has("prompt") ? f.string("prompt") : f.has("text") ? f.string("text") : f.fail("prompt", "is missing (neither prompt nor text)");
  const tests = f.stringArray("test_list");
  if (tests.length === 0) f.fail("test_list", "is empty");
  const imports = f.has("test_imports") ? f.stringArray("test_imports") : [];
  const code = f.optionalString("code");
  return {
    task_id: taskId,
    prompt,
    tests: { kind: "assert", setup: imports.join("\n"), tests },
    ...(code !== undefined ? { reference: code } : {}),
    source: "mbpp",
  };
}
