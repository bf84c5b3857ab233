import { test } from "node:test";
import assert from "node:assert/strict";
import { sampleBatch } from "./batch-sampler.js";
import { passRate } from "./pass-at-1.js";

test("batches are deterministic per (seed, step) and cover every row once per epoch", () => {
  assert.deepEqual(sampleBatch(10, 4, 3, 2), sampleBatch(10, 4, 3, 2));
  assert.notDeepEqual(sampleBatch(10, 4, 3, 1), sampleBatch(10, 4, 4, 1));
  const epoch = [1, 2, 3, 4, 5].flatMap((s) => sampleBatch(10, 2, 9, s));
  assert.deepEqual(
    [...epoch].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.throws(() => sampleBatch(0, 1, 1, 1), /empty dataset/);
});

test("pass@1 carries a 95% Wilson interval", () => {
  const r = passRate(30, 100);
  assert.equal(r.passAt1, 0.3);
  assert.ok(Math.abs(r.ciLow - 0.2189) < 1e-3 && Math.abs(r.ciHigh - 0.3958) < 1e-3, JSON.stringify(r));
  assert.deepEqual(passRate(0, 0), { passAt1: 0, n: 0, ciLow: 0, ciHigh: 0 });
  assert.equal(passRate(0, 20).ciLow, 0);
  assert.equal(passRate(20, 20).ciHigh, 1);
});
