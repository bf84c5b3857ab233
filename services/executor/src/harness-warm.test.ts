// The sandbox's warm interpreters, on each backend: PID 1 moves its objects to the collector's
// permanent generation (gc.freeze) before it forks anything, and the persistent judge does the
// same before its first run, so a collection in a forked process never walks the harness's own
// objects (the judge's per-run gc.collect() cost ~3 ms per candidate before; deploy/sandbox/README.md).
// Checked from where it matters: the candidate's program and the judge's test code read
// gc.get_freeze_count() in their own processes, on a fresh and on a reused judge.
import { describe } from "node:test";
import assert from "node:assert/strict";
import type { AssertTests } from "@rlmesh/shared/datasets/index";
import { backendTest, backendsUnderTest, executorFixture, fenced } from "./test-support.js";
import type { SandboxBackendName } from "./sandbox-backend.js";

const QUEUE = "reward-harness-warm";
const LIMITS = { timeout_ms_per_test: 5000, total_timeout_ms: 10000, memory_mb: 256, output_bytes: 1 << 20 };
/** The harness's modules alone hold tens of thousands of objects; a run's own are far fewer. */
const FROZEN_AT_LEAST = 10_000;

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
}

for (const backend of backendsUnderTest()) describe(`${backend} backend`, () => suite(backend));
