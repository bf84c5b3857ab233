import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { generateToySuite, TOY_SPLITS } from "./generate-suite.js";
import type { TaskRow } from "./task-row.js";

/**
 * Runs OUR OWN reference solutions (trusted code) with the local python3, no sandbox: the
 * tests of every row must pass on its reference. Untrusted candidates go through the executor.
 */
const HARNESS =
  String.raw`
import contextlib, io, json, re, sys
rows = json.load(sys.stdin)
failures = []
for r in rows:
    m = re.fullmatch(r"` +
  "```python\\n(.*)\\n```" +
  String.raw`", r["reference"], re.S)
    if not m:
        failures.append([r["task_id"], "no fenced block"]); continue
    code = m.group(1)
    t = r["tests"]
    try:
        if t["kind"] == "assert":
            for a in t["tests"]:
                g = {}
                exec(code, g)
                exec(t.get("setup", ""), g)
                exec(a, g)
        else:
            for c in t["cases"]:
                sys.stdin = io.StringIO(c["input"])
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(code, {})
                if out.getvalue() != c["output"]:
                    raise AssertionError("printed %r, expected %r for input %r" % (out.getvalue(), c["output"], c["input"]))
    except BaseException as e:
        failures.append([r["task_id"], repr(e)])
sys.stdout = sys.__stdout__
print(json.dumps({"rows": len(rows), "failures": failures}))
`;

function runReferences(rows: readonly TaskRow[]): { rows: number; failures: string[][] } {
  const res = spawnSync("python3", ["-c", HARNESS], { input: JSON.stringify(rows), encoding: "utf8", maxBuffer: 64 << 20 });
  if (res.error) throw new Error(`python3 is required for this test: ${res.error.message}`);
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout) as { rows: number; failures: string[][] };
}

test("every reference solution passes its own tests under python3 (all splits)", () => {
  const suite = generateToySuite();
  const rows = TOY_SPLITS.flatMap((s) => suite[s]);
  const result = runReferences(rows);
  assert.equal(result.rows, rows.length);
  assert.deepEqual(result.failures.slice(0, 5), []);
});

test("the check can fail: a wrong solution and a wrong expected output are caught", () => {
  const suite = generateToySuite({ trainSize: 10, testInstancesSize: 0, testCompositionalSize: 0 });
  const fn = suite.train.find((r) => r.meta.form === "function");
  const prog = suite.train.find((r) => r.meta.form === "program");
  assert.ok(fn && prog);
  const broken: TaskRow[] = [
    { ...fn, reference: "```python\ndef f(*a):\n    return 0\n```" },
    {
      ...prog,
      tests: { kind: "stdio", cases: prog.tests.kind === "stdio" ? prog.tests.cases.map((c) => ({ ...c, output: "nope\n" })) : [] },
    },
  ];
  assert.equal(runReferences(broken).failures.length, 2);
});
