// All 427 MBPP references must earn reward 1 through queue -> executor -> sandbox, and mutated
// versions must earn 0, on every sandbox backend (Docker and bwrap). Needs dockerd, bubblewrap
// and redis-server; fails loudly without them.
import { before, describe } from "node:test";
import assert from "node:assert/strict";
import { type CanonicalRow, loadDataset } from "@rlmesh/shared/datasets/index";
import { defaultMbppPath } from "./bench-command.js";
import { asResponse } from "./code-block.js";
import { runEval } from "./run-eval.js";
import type { SandboxBackendName } from "./sandbox-backend.js";
import { backendTest, backendsUnderTest, requireBackend, withSandboxBackend } from "./test-support.js";

let rows: CanonicalRow[];

before(() => {
  delete process.env.REDIS_URL; // a private redis-server and an in-process executor
  rows = loadDataset(defaultMbppPath(), "mbpp");
});

/** Mutations that keep the program valid Python but change its answers. */
function mutate(code: string, i: number): string {
  switch (i % 4) {
    case 0:
      // Every function returns None.
      return code.replace(/^(\s*)def (\w+)\((.*)\):/m, "$1def $2($3):\n$1    return None");
    case 1:
      // Wrap results in an object that claims equality with everything.
      return `${code}\nclass _Any:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n    def __bool__(self): return True\n    def __hash__(self): return 0\nimport functools as _ft\nfor _n, _f in list(globals().items()):\n    if callable(_f) and getattr(_f, '__module__', None) == __name__ and not isinstance(_f, type) and not _n.startswith('_'):\n        globals()[_n] = (lambda f: _ft.wraps(f)(lambda *a, **k: _Any()))(_f)\n`;
    case 2:
      // Exit "successfully" before any test runs.
      return `import sys\n${code}\nsys.exit(0)\n`;
    default:
      // A syntax error: zero tests run.
      return `${code}\ndef broken(:\n    pass\n`;
  }
}

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  before(() => requireBackend(backend));

  test("every MBPP reference solution gets reward 1 through the real path", { timeout: 180_000 }, async () => {
    assert.equal(rows.length, 427);
    // Task 123 needs ~3 s of CPU per test; generous wall-clock limits keep this stable on a
    // machine shared by many processes (the limits themselves are tested in adversarial.test).
    const report = await withSandboxBackend(backend, () =>
      runEval({
      dataset: rows,
      solutions: "canonical",
      concurrency: 2,
      limits: { timeout_ms_per_test: 60_000, total_timeout_ms: 120_000 },
      }),
    );
    const failures = report.rows.filter((r) => r.result.reward !== 1).map((r) => `${r.task_id}: ${r.result.status} ${r.result.reason}`);
    assert.deepEqual(failures, []);
    assert.equal(report.summary.passed, 427);
    assert.equal(report.summary.by_status.passed, 427);
  });

  test("mutated MBPP references get reward 0", { timeout: 120_000 }, async () => {
    const sample = rows.filter((_, i) => i % 7 === 0).slice(0, 60);
    const responses = new Map(sample.map((r, i) => [r.task_id, asResponse(mutate(r.reference!, i))]));
    const report = await withSandboxBackend(backend, () => runEval({ dataset: sample, responses, concurrency: 2 }));
    const rewarded = report.rows.filter((r) => r.result.reward !== 0).map((r) => r.task_id);
    assert.deepEqual(rewarded, [], "mutants that still earned reward 1");
    assert.equal(report.summary.passed, 0);
    assert.ok((report.summary.by_status.failed ?? 0) > 0 && (report.summary.by_status.runtime_error ?? 0) > 0);
  });
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
