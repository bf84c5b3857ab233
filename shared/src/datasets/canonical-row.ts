/**
 * rlmesh's canonical dataset row: what every supported dataset format converts to, what the
 * api loads problems as, and what reward jobs carry as `tests`.
 */

/** Assert statements run after the program (MBPP, HumanEval, KodCode). */
export interface AssertTests {
  kind: "assert";
  /** Code run once before the tests in the tests' namespace (imports, HumanEval's `def check`). */
  setup?: string;
  /** One assert-style test per entry; each may hold several statements. */
  tests: string[];
  /** Name bound to the candidate's function as `entry_point` in the tests' namespace (HumanEval). */
  entry_point?: string;
}

/** `fn(*args)` compared with `expected` as plain (JSON) data. */
export interface CallCase {
  args: unknown[];
  expected: unknown;
}
export interface CallTests {
  kind: "call";
  /** Function name; a LeetCode-style `class Solution` method of that name also counts. */
  fn: string;
  cases: CallCase[];
}

/** Program run once per case with `input` on stdin; stdout compared with `output`. */
export interface StdioCase {
  input: string;
  output: string;
}
export interface StdioTests {
  kind: "stdio";
  cases: StdioCase[];
}

export type TestSpec = AssertTests | CallTests | StdioTests;

export type DatasetSource = "rlmesh" | "humaneval" | "mbpp" | "lcb";

export interface CanonicalRow {
  task_id: string;
  /** The problem statement given to the model. */
  prompt: string;
  tests: TestSpec;
  /** A reference program that passes the tests, when the dataset has one. */
  reference?: string;
  /** Format the row was converted from. */
  source: DatasetSource;
  /**
   * The task template the row was generated from (an rlmesh row's `meta.template`, e.g. the toy
   * suite's `arithmetic/sub.square.sub`), when it has one: the curriculum sampler's key.
   */
  template?: string;
}

/** Number of tests a spec holds (what tests_run counts up to). */
export function testCount(tests: TestSpec): number {
  return tests.kind === "assert" ? tests.tests.length : tests.cases.length;
}
