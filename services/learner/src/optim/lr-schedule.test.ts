import { test } from "node:test";
import assert from "node:assert/strict";
import { learningRateAt, type LrScheduleConfig } from "./lr-schedule.js";

const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);
const base: LrScheduleConfig = { baseLr: 1e-3, warmupSteps: 4, decay: "constant", minLrRatio: 0.1 };

test("linear warmup then constant", () => {
  close(learningRateAt(0, base), 0.25e-3);
  close(learningRateAt(3, base), 1e-3);
  close(learningRateAt(100, base), 1e-3);
});

test("cosine decay to minLrRatio, and the collapse-guard scale multiplies everything", () => {
  const cos: LrScheduleConfig = { ...base, decay: "cosine", totalSteps: 14 };
  close(learningRateAt(4, cos), 1e-3);
  close(learningRateAt(9, cos), 1e-4 + 0.45e-3);
  close(learningRateAt(14, cos), 1e-4);
  close(learningRateAt(50, cos), 1e-4);
  close(learningRateAt(9, cos, 0.5), (1e-4 + 0.45e-3) / 2);
  close(learningRateAt(1, base, 0.25), 0.125e-3);
  assert.throws(() => learningRateAt(5, { ...cos, totalSteps: undefined }), RangeError);
});
