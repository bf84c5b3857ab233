import type { CanonicalRow, TestSpec } from "./canonical-row.js";
import { RowFields, describe } from "./row-fields.js";

/** Validates a row already in rlmesh's canonical format. */
export function fromRlmesh(row: Record<string, unknown>, line: number, file?: string): CanonicalRow {
  const f = new RowFields(row, line, file);
  const taskId = f.id("task_id");
  const prompt = f.string("prompt");
  const reference = f.optionalString("reference");
  const t = row.tests;
  if (typeof t !== "object" || t === null || Array.isArray(t)) f.fail("tests", `expected an object, got ${describe(t)}`);
  const tf = new RowFields(t as Record<string, unknown>, line, file);
  const prefix = (k: string) => `tests.${k}`;
  const kind = (t as Record<string, unknown>).kind;
  let tests: TestSpec;
  if (kind === "assert") {
    const list = tf.has("tests") ? tf.stringArray("tests") : f.fail(prefix("tests"), "is missing");
    if (list.length === 0) f.fail(prefix("tests"), "is empty");
    const setup = tf.optionalString("setup");
    const entry = tf.optionalString("entry_point");
    tests = { kind, tests: list, ...(setup !== undefined ? { setup } : {}), ...(entry !== undefined ? { entry_point: entry } : {}) };
  } else if (kind === "call") {
    const fn = tf.has("fn") ? tf.string("fn") : f.fail(prefix("fn"), "is missing");
    const cases = casesOf(f, t as Record<string, unknown>);
    cases.forEach((c, i) => {
      if (!Array.isArray(c.args)) f.fail(`tests.cases[${i}].args`, `expected a list, got ${describe(c.args)}`);
      if (!("expected" in c)) f.fail(`tests.cases[${i}].expected`, "is missing");
    });
    tests = { kind, fn, cases: cases as { args: unknown[]; expected: unknown }[] };
  } else if (kind === "stdio") {
    const cases = casesOf(f, t as Record<string, unknown>);
    cases.forEach((c, i) => {
      for (const k of ["input", "output"]) if (typeof c[k] !== "string") f.fail(`tests.cases[${i}].${k}`, `expected a string, got ${describe(c[k])}`);
    });
    tests = { kind, cases: cases as { input: string; output: string }[] };
  } else {
    return f.fail("tests.kind", `expected "assert", "call" or "stdio", got ${describe(kind)}`);
  }
  // The curriculum key: `meta.template` (the toy suite's rows), or `template` (a canonical row written back out).
  const meta = row.meta;
  const inMeta = typeof meta === "object" && meta !== null && !Array.isArray(meta) && "template" in meta;
  const template = inMeta ? (meta as Record<string, unknown>).template : row.template;
  if (template !== undefined && (typeof template !== "string" || template === "")) {
    f.fail(inMeta ? "meta.template" : "template", `expected a non-empty string, got ${describe(template)}`);
  }
  return {
    task_id: taskId,
    prompt,
    tests,
    ...(reference !== undefined ? { reference } : {}),
    source: "rlmesh",
    ...(typeof template === "string" ? { template } : {}),
  };
}

function casesOf(f: RowFields, t: Record<string, unknown>): Record<string, unknown>[] {
  const cases = t.cases;
  if (!Array.isArray(cases) || cases.length === 0) f.fail("tests.cases", "expected a non-empty list");
  cases.forEach((c, i) => {
    if (typeof c !== "object" || c === null || Array.isArray(c)) f.fail(`tests.cases[${i}]`, `expected an object, got ${describe(c)}`);
  });
  return cases as Record<string, unknown>[];
}
