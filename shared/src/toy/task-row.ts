import type { AssertTests, StdioTests } from "../datasets/canonical-row.js";

/**
 * A toy-suite row as written to .jsonl: rlmesh's canonical dataset row (see
 * shared/src/datasets/canonical-row.ts; `fromRlmesh` reads it) plus `meta`, which the
 * converters ignore and the evaluation uses to break results down.
 */
export type ToySplit = "train" | "test-instances" | "test-compositional";

export interface TaskMeta {
  family: string;
  template: string;
  /** A ToySplit name for generated rows. */
  split: string;
  /** "function": define f, checked by asserts; "program": read stdin, print, checked by stdio. */
  form: "function" | "program";
  /** Template plus constants: rows with equal instances are the same task. */
  instance: string;
}

export interface TaskRow {
  task_id: string;
  /** English specification shown to the policy. */
  prompt: string;
  /** One kind per row: asserts for functions, stdin/stdout cases for programs. */
  tests: AssertTests | StdioTests;
  /** A correct response: a fenced ```python block (what the reward accepts). */
  reference: string;
  meta: TaskMeta;
}

/** Number of tests of a row. */
export function testCountOf(row: TaskRow): number {
  return row.tests.kind === "assert" ? row.tests.tests.length : row.tests.cases.length;
}

/** Wraps code in the fenced block the reward requires. */
export function fencePython(code: string): string {
  return "```python\n" + code + "\n```";
}
