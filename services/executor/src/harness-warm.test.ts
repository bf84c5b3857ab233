// The sandbox's warm interpreters, on each backend: PID 1 moves its objects to the collector's
// permanent generation (gc.freeze) before it forks anything, and the persistent judge does the
// same before its first run, so a collection in a forked process never walks the harness's own
// objects (the judge's per-run gc.collect() cost ~3 ms per candidate before; deploy/sandbox/README.md).
// Checked from where it matters: the candidate's program and the judge's test code read
// gc.get_freeze_count() in their own processes, on a fresh and on a reused judge. A run that
// changes the collector's state retires its judge, so later runs never see the change.
import { describe } from "node:test";
import assert from "node:assert/strict";
import type { AssertTests } from "@rlmesh/shared/datasets/index";
import { backendTest, backendsUnderTest, executorFixture, fenced } from "./test-support.js";
import type { SandboxBackendName } from "./sandbox-backend.js";

const QUEUE = "reward-harness-warm";
const LIMITS = { timeout_ms_per_test: 5000, total_timeout_ms: 10000, memory_mb: 256, output_bytes: 1 << 20 };
/** The harness's modules alone hold tens of thousands of objects; a run's own are far fewer. */
const FROZEN_AT_LEAST = 10_000;
/**
 * Objects a run keeps frozen in the gc-state test: more than the harness's own (~10^5) and few
 * enough (~25 MB) that the judge's memory growth alone would not retire it.
 */
const KEPT_FROZEN = 400_000;

function suite(backend: SandboxBackendName): void {
  const test = backendTest(backend);
  const fx = executorFixture(QUEUE, backend, `warm-${process.pid}-${backend}`);

  test("the candidate process and the judge start from a frozen warm interpreter (gc.freeze), on a fresh and a reused judge", async () => {
    const program = "import gc\ndef frozen():\n    return gc.get_freeze_count()";
    // setup runs in the judge process: its own count; frozen() asks the candidate process.
    const tests: AssertTests = {
      kind: "assert",
      setup: "import gc",
      tests: [`assert gc.get_freeze_count() >= ${FROZEN_AT_LEAST}`, `assert frozen() >= ${FROZEN_AT_LEAST}`],
    };
    for (let run = 0; run < 2; run++) {
      const r = await fx.client.score(fenced(program), tests, LIMITS);
      assert.equal(r.reward, 1, `run ${run}: ${JSON.stringify(r)}`);
    }
    // The control: a count above anything frozen fails (the assertion can fail).
    const high: AssertTests = { kind: "assert", setup: "import gc", tests: ["assert gc.get_freeze_count() >= 10 ** 9"] };
    assert.equal((await fx.client.score(fenced(program), high, LIMITS)).reward, 0);
  });

  test("a run's test code that changes the collector's state (disable, unfreeze, set_threshold, freeze, replacing freeze/unfreeze) is not seen by later runs", async () => {
    const program = "def add(a, b):\n    return a + b";
    const DEFAULT_THRESHOLD = "(700, 10, 10)";
    // Later runs check the state the judge (or a fresh one) starts from.
    const check: AssertTests = {
      kind: "assert",
      setup: "import gc",
      tests: [
        "assert gc.isenabled()",
        `assert gc.get_threshold() == ${DEFAULT_THRESHOLD}, gc.get_threshold()`,
        `assert ${FROZEN_AT_LEAST} <= gc.get_freeze_count() < ${KEPT_FROZEN}, gc.get_freeze_count()`,
        "assert (gc.freeze.__name__, gc.unfreeze.__name__) == ('freeze', 'unfreeze'), (gc.freeze, gc.unfreeze)",
        "assert add(1, 2) == 3",
      ],
    };
    assert.equal((await fx.client.score(fenced(program), check, LIMITS)).reward, 1, "the state before any change");
    // The last one keeps KEPT_FROZEN objects alive in a module (they outlive the run) and freezes them.
    const keepFrozen = `import math\nmath._rlmesh_gc_kept = [[] for _ in range(${KEPT_FROZEN})]\ngc.freeze()`;
    // The judge counts freeze/unfreeze through wrappers of its own: a run may also replace them.
    const changes = ["gc.disable()", "gc.unfreeze()", "gc.set_threshold(1, 1, 1)", keepFrozen, "gc.freeze = gc.collect", "gc.unfreeze, gc.freeze = gc.freeze, gc.unfreeze"];
    for (const change of changes) {
      const changed: AssertTests = { kind: "assert", setup: "import gc", tests: [change, "assert add(1, 2) == 3"] };
      assert.equal((await fx.client.score(fenced(program), changed, LIMITS)).reward, 1, change);
      // Twice: if the changing run was its judge's last (JUDGE_RUNS), the first check meets a fresh one anyway.
      for (let i = 0; i < 2; i++) {
        const r = await fx.client.score(fenced(program), check, LIMITS);
        assert.equal(r.reward, 1, `after ${change}: ${JSON.stringify(r)}`);
      }
    }
  });
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
