// The LR decay over a job's run (spec.lr_schedule): the schedule's factor and the run's progress,
// by hand-computed values.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lrDecayFactor, runProgress } from "./lr-decay.js";

const close = (got: number, want: number, what: string) => assert.ok(Math.abs(got - want) < 1e-12, `${what}: got ${got}, want ${want}`);

test("cosine: 1 until decay_start, then a half cosine to min_ratio at the end; clamped outside [0, 1]", () => {
  const s = { decay: "cosine" as const, decayStart: 0.5, minRatio: 0.1 };
  close(lrDecayFactor(0, s), 1, "start");
  close(lrDecayFactor(0.3, s), 1, "before decay_start");
  close(lrDecayFactor(0.5, s), 1, "at decay_start");
  // Half-way through the decay cos(π/2) = 0: the mid-point of 1 and 0.1.
  close(lrDecayFactor(0.75, s), 0.55, "half-way through the decay");
  // A quarter of the way: 0.1 + 0.45 (1 + cos(π/4)) = 0.1 + 0.45 · 1.7071…
  close(lrDecayFactor(0.625, s), 0.1 + 0.45 * (1 + Math.SQRT1_2), "a quarter of the way");
  close(lrDecayFactor(1, s), 0.1, "end");
  close(lrDecayFactor(1.5, s), 0.1, "past the end");
  close(lrDecayFactor(-0.2, s), 1, "before the start");
  const t = { decay: "cosine" as const, decayStart: 0, minRatio: 0.2 };
  // u = 1/3: 0.2 + 0.4 (1 + cos(π/3)) = 0.2 + 0.4 · 1.5 = 0.8.
  close(lrDecayFactor(1 / 3, t), 0.8, "decay from the start, a third of the way");
  close(lrDecayFactor(0.5, t), 0.6, "decay from the start, half-way");
  close(lrDecayFactor(1, { decay: "cosine", decayStart: 0.9, minRatio: 1 }), 1, "min_ratio 1 never decays");
  assert.throws(() => lrDecayFactor(Number.NaN, s), /progress must be a finite number, got NaN/);
});

test("constant: factor 1 everywhere", () => {
  const s = { decay: "constant" as const, decayStart: 0.5, minRatio: 0.1 };
  for (const p of [0, 0.5, 0.99, 1, 2]) close(lrDecayFactor(p, s), 1, `progress ${p}`);
});

test("progress at a step's start: steps done over steps, or the budget spent, whichever is further; at most 1", () => {
  close(runProgress(1, 0, { steps: 10, maxMinutes: 0 }), 0, "the first step starts at 0");
  close(runProgress(6, 0, { steps: 10, maxMinutes: 0 }), 0.5, "5 of 10 steps done");
  close(runProgress(10, 0, { steps: 10, maxMinutes: 0 }), 0.9, "the last step starts at 9/10");
  close(runProgress(2, 300, { steps: 1_000_000, maxMinutes: 10 }), 0.5, "300 s of a 10 min budget");
  close(runProgress(9, 60, { steps: 10, maxMinutes: 10 }), 0.8, "steps ahead of the clock");
  close(runProgress(3, 450, { steps: 10, maxMinutes: 10 }), 0.75, "the clock ahead of the steps");
  close(runProgress(3, 900, { steps: 1_000_000, maxMinutes: 10 }), 1, "past the budget");
  close(runProgress(5, 10_000, { steps: 10, maxMinutes: 0 }), 0.4, "no budget: time does not count");
});
