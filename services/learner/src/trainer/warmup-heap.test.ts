// The warm-up against jax-js's 4 GiB wasm heap (which never shrinks; a batch shape's buffers serve
// that shape only). The regression: on a loaded machine the first TrainStep came late enough for
// the warm-up to compile all six shapes of the default recipe (32 rows: 4027 MiB on the shipped
// model), and the job, whose batches had 16 rows, failed its first step with "Allocation exceeds
// the 4 GiB memory32 limit" (the same job without warm-up trains all six 16-row buckets in about
// 2 GiB). Here the warm-up of each job runs to its end before the job's first step, on the shipped
// model, jobs one after another on one learner process, as in a mesh test.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";
import { loadModel } from "@rlmesh/shared/model/index";
import { DEFAULT_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { JobTrainers } from "./job-trainers.js";
import { DEFAULT_WARMUP_MAX_HEAP_MIB, DEFAULT_WARMUP_RECIPE } from "./warmup.js";
import { WASM_HEAP_LIMIT_BYTES, wasmHeapBytes } from "../model/jax-runtime.js";

const root = await mkdtemp(join(tmpdir(), "rlmesh-warmup-heap-test-"));
after(() => rm(root, { recursive: true, force: true }));
const logger = createLogger("warmup-heap-test", { level: "error" });
const manifest = (await loadModel(DEFAULT_MODEL_DIR)).manifest;
const MiB = 2 ** 20;

/** 4 prompts × G 4 (16 rows, the python client test's job) of 30-token prompts and `responseLen`-token responses. */
function request(jobId: string, step: number, version: number, responseLen: number): TrainStepRequest {
  const id = (x: number) => 3 + (x % (manifest.vocab_size - 4));
  const samples: TrainSample[] = [];
  for (let p = 0; p < 4; p++) {
    const prompt = Array.from({ length: 30 }, (_, j) => id(p * 17 + j * 5 + step));
    for (let g = 0; g < 4; g++) {
      const response = [...Array.from({ length: responseLen - 1 }, (_, j) => id(p * 29 + g * 11 + j * 3 + step)), manifest.eos_id];
      samples.push({ promptId: `p${p}`, promptTokenIds: prompt, responseTokenIds: response, reward: (p + g) % 2, policyVersion: version, policyJobId: jobId, suffixTokenIds: [] });
    }
  }
  return { jobId, step, samples, params: null, seed: 7 };
}

test("jobs one after another, each warm-up run to its end before the job's 16-row steps: the warm-up stays in its heap budget and every job trains", { timeout: 900_000 }, async () => {
  const host = await JobTrainers.open({ root, logger, trainer: { updatePath: "fast" }, warmup: { ...DEFAULT_WARMUP_RECIPE, maxSeconds: 900 } });
  try {
    let heapAfterA = 0;
    for (const [jobId, responseLens] of [
      ["job-a", [2, 18, 34]], // padded to 32, 48, 64: none of them a shape of the warm-up (32 rows)
      ["job-b", [50]], // 80
    ] as const) {
      await host.startJob({ jobId, modelDir: DEFAULT_MODEL_DIR });
      const heapBefore = wasmHeapBytes();
      assert.ok(heapBefore !== null, "jax-js's wasm heap is measured");
      host.warmUp(jobId);
      const report = await host.trainerFor(jobId).warmupReport()!;
      const outcomes = report.shapes.map((s) => `${s.rows}x${s.seqLen}:${s.outcome}`).join(",");
      assert.equal(report.wasmHeapBytes, wasmHeapBytes());
      if (jobId === "job-a") {
        // A fresh heap: the first shape runs; then no shape whose estimate would pass the budget.
        assert.ok(report.shapes.some((s) => s.outcome === "compiled"), outcomes);
        assert.ok(report.shapes.some((s) => s.outcome === "skipped"), `the budget left shapes out: ${outcomes}`);
        assert.ok(report.wasmHeapBytes <= DEFAULT_WARMUP_MAX_HEAP_MIB * MiB, `heap ${(report.wasmHeapBytes / MiB).toFixed(0)} MiB after the warm-up (${outcomes})`);
      } else {
        // The shapes the last job's warm-up ran (their buffers are still in the heap) run again at
        // no heap cost; nothing new is started, the heap being past the budget with job-a's steps.
        assert.ok(heapBefore > DEFAULT_WARMUP_MAX_HEAP_MIB * MiB, `heap ${(heapBefore / MiB).toFixed(0)} MiB`);
        assert.equal(report.wasmHeapBytes, heapBefore, `the warm-up took no new heap (${outcomes})`);
        assert.ok(report.shapes.some((s) => s.outcome === "compiled"), outcomes);
      }
      let version = 0;
      for (const [i, len] of responseLens.entries()) {
        const r = await host.trainerFor(jobId).trainStep(request(jobId, i + 1, version, len));
        assert.equal(r.policyVersion, version + 1, `${jobId} step ${i + 1} trained`);
        assert.ok(Number.isFinite(r.stats.loss), `${jobId} step ${i + 1} loss ${r.stats.loss}`);
        version = r.policyVersion;
      }
      if (jobId === "job-a") heapAfterA = wasmHeapBytes()!;
    }
    assert.ok(wasmHeapBytes()! > heapAfterA, "job-b's new 80 bucket took heap");
    assert.ok(wasmHeapBytes()! < WASM_HEAP_LIMIT_BYTES / 2, `heap ${(wasmHeapBytes()! / MiB).toFixed(0)} MiB`);
  } finally {
    host.dispose();
  }
});
