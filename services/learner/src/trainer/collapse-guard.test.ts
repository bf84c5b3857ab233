import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_COLLAPSE_GUARD_CONFIG as cfg,
  initialCollapseGuardState,
  lastGoodCheckpoint,
  protectedCheckpoints,
  noteCheckpoint,
  observeHeldOutPass,
  observeStepReward,
  type CollapseDecision,
  type CollapseGuardState,
} from "./collapse-guard.js";

/** Feeds rewards for steps from..; checkpoints every `every` steps; stops at the first non-continue. */
function run(
  state: CollapseGuardState,
  rewards: number[],
  from: number,
  every = 5,
  config = cfg,
): { state: CollapseGuardState; decision: CollapseDecision; step: number } {
  let s = state;
  for (let i = 0; i < rewards.length; i++) {
    const step = from + i;
    const r = observeStepReward(s, config, { step, rewardMean: rewards[i]! });
    s = r.state;
    if (r.decision.kind !== "continue") return { state: s, decision: r.decision, step };
    if (step % every === 0) s = noteCheckpoint(s, step);
  }
  return { state: s, decision: { kind: "continue" }, step: from + rewards.length - 1 };
}

test("healthy noisy training never triggers", () => {
  const rewards = Array.from({ length: 60 }, (_, i) => 0.3 + 0.002 * i + (i % 3 === 0 ? -0.04 : 0.02));
  assert.equal(run(initialCollapseGuardState(), rewards, 1).decision.kind, "continue");
});

test("the demo's recorded step rewards (a healthy run) never trigger the defaults; judging single steps did", () => {
  // 333 steps of `npx rlmesh demo` (4 prompts × 8 samples per step): held-out pass@1 rose 35 → 47 %,
  // yet one step's mean reward swings 0.0–0.9, and the old single-step rule rolled it back 3 times.
  const file = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test-data", "demo-step-rewards.json");
  const rewards = (JSON.parse(readFileSync(file, "utf8")) as { rewards: number[] }).rewards;
  assert.equal(rewards.length, 333);
  assert.equal(run(initialCollapseGuardState(), rewards, 1, 1).decision.kind, "continue");
  const single = { ...cfg, rewardSmoothing: 1, rewardWindow: 10 };
  assert.equal(run(noteCheckpoint(initialCollapseGuardState(), 0), rewards, 1, 1, single).decision.kind, "rollback");
});

test("an injected reward collapse rolls back to a good checkpoint before the smoothing window and halves the LR", () => {
  // steps 1..40 healthy (0.4), collapse to 0.05 from step 41; checkpoints every 5 steps.
  const rewards = [...Array.from({ length: 40 }, () => 0.4), ...Array.from({ length: 20 }, () => 0.05)];
  const r = run(initialCollapseGuardState(), rewards, 1);
  assert.equal(r.decision.kind, "rollback");
  if (r.decision.kind !== "rollback") return;
  // The 16-step mean falls below half the baseline (0.2) with the 10th low step (step 50): the
  // streak opens there with its window starting at step 35, and patience 3 triggers at step 52.
  assert.equal(r.step, 52);
  assert.equal(r.decision.trigger, "step_reward");
  assert.match(r.decision.reason, /mean of the last 16 steps\) vs baseline 0\.400 for 3 steps since step 35/);
  assert.equal(r.decision.toStep, 30, "the newest checkpoint before the window of the streak");
  assert.equal(r.decision.lrScale, 0.5);
  assert.equal(r.state.lrScale, 0.5);
  assert.equal(lastGoodCheckpoint(r.state), 30);
  // After the rollback the run resumes from step 31 and is healthy again: no new trigger.
  const resumed = run(
    r.state,
    Array.from({ length: 60 }, () => 0.42),
    31,
  );
  assert.equal(resumed.decision.kind, "continue");
});

test("a state kept under a larger smoothing window (a learner resumed with a smaller one) still judges", () => {
  const healthy = run(
    initialCollapseGuardState(),
    Array.from({ length: 40 }, () => 0.4),
    1,
  ).state;
  assert.equal(healthy.recentRewards.length, 16);
  const small = { ...cfg, rewardSmoothing: 4 };
  const r = run(
    healthy,
    Array.from({ length: 20 }, () => 0.05),
    41,
    5,
    small,
  );
  assert.equal(r.decision.kind, "rollback");
  // The 4-step mean is below half the baseline from step 43 (0.05, 0.05, 0.05, 0.4 → 0.14); patience 3 → step 45.
  assert.equal(r.step, 45);
});

test("with a checkpoint after every step, the rollback target is among the protected checkpoints before the trigger", () => {
  let state = initialCollapseGuardState();
  let decision: CollapseDecision = { kind: "continue" };
  let protectedBefore: number[] = [];
  const rewards = [...Array.from({ length: 40 }, () => 0.5), ...Array.from({ length: 20 }, () => 0.05)];
  for (let i = 0; i < rewards.length && decision.kind === "continue"; i++) {
    protectedBefore = protectedCheckpoints(state);
    const r = observeStepReward(state, cfg, { step: i, rewardMean: rewards[i]! });
    state = noteCheckpoint(r.state, i + 1);
    decision = r.decision;
  }
  assert.equal(decision.kind, "rollback");
  if (decision.kind !== "rollback") return;
  // The streak opened at step 48 (9th low step) with its window starting at step 33: the target is
  // checkpoint 32, long out of the newest two but kept on disk.
  assert.equal(decision.toStep, 32);
  assert.ok(protectedBefore.includes(32), `protected ${JSON.stringify(protectedBefore)}`);
});

test("a small dip (below the absolute threshold) and alternating bad steps do not trigger", () => {
  const dip = run(initialCollapseGuardState(), [...Array.from({ length: 40 }, () => 0.06), ...Array.from({ length: 40 }, () => 0.02)], 1);
  assert.equal(dip.decision.kind, "continue");
  const blips = Array.from({ length: 40 }, (_, i) => (i % 2 ? 0.1 : 0.5));
  const blip = run(initialCollapseGuardState(), [...Array.from({ length: 40 }, () => 0.5), ...blips], 1);
  assert.equal(blip.decision.kind, "continue");
  // The same alternation judged step by step (the old rule) is a collapse.
  const single = { ...cfg, rewardSmoothing: 1, rewardWindow: 10, rewardPatience: 1 };
  const old = run(initialCollapseGuardState(), [...Array.from({ length: 40 }, () => 0.5), ...blips], 1, 1, single);
  assert.equal(old.decision.kind, "rollback");
});

test("a held-out pass@1 drop triggers a rollback; without a good checkpoint the guard says stop", () => {
  let s = initialCollapseGuardState();
  s = observeHeldOutPass(s, cfg, { step: 0, passAt1: 0.2 }).state;
  s = noteCheckpoint(s, 0);
  s = observeHeldOutPass(s, cfg, { step: 10, passAt1: 0.26 }).state;
  s = noteCheckpoint(s, 10);
  const r = observeHeldOutPass(s, cfg, { step: 20, passAt1: 0.15 });
  assert.deepEqual(
    { kind: r.decision.kind, toStep: r.decision.kind === "rollback" ? r.decision.toStep : null },
    { kind: "rollback", toStep: 10 },
  );
  const none = observeHeldOutPass(observeHeldOutPass(initialCollapseGuardState(), cfg, { step: 0, passAt1: 0.3 }).state, cfg, {
    step: 5,
    passAt1: 0.1,
  });
  assert.equal(none.decision.kind, "stop");
});

test("a slow held-out slide rolls back to the checkpoint of the best eval, kept on disk, not to the newest", () => {
  // Measured: LR 3e-4 went 35.0% → 32.5% (within passDrop, still healthy) → 24.5%; rolling back to
  // the checkpoint just before the trigger restored weights that had already slid.
  let s = initialCollapseGuardState();
  s = noteCheckpoint(s, 0);
  s = observeHeldOutPass(s, cfg, { step: 0, passAt1: 0.35, n: 200 }).state;
  let protectedAtTrigger: number[] = [];
  for (let step = 1; step <= 50; step++) {
    if (step === 25) s = observeHeldOutPass(s, cfg, { step, passAt1: 0.35 - cfg.passDrop / 2, n: 200 }).state;
    s = noteCheckpoint(s, step);
  }
  protectedAtTrigger = protectedCheckpoints(s);
  let r = observeHeldOutPass(s, cfg, { step: 50, passAt1: 0.245, n: 200 });
  for (let k = 1; k < cfg.passPatience; k++) r = observeHeldOutPass(r.state, cfg, { step: 50 + k, passAt1: 0.245, n: 200 });
  assert.equal(r.decision.kind, "rollback");
  if (r.decision.kind !== "rollback") return;
  assert.equal(r.decision.toStep, 0);
  assert.ok(protectedAtTrigger.includes(0), `protected ${JSON.stringify(protectedAtTrigger)}`);
  assert.deepEqual(protectedAtTrigger.slice(0, 2), [50, 49], "the two newest stay protected too");
});

test("a held-out drop within the evals' sampling noise is not a collapse; a significant one is", () => {
  // n = 200: the standard error of the difference of two pass@1 near 0.45 is 5 points, so with
  // passZ 2 a 7-point drop is noise and a 12-point drop rolls back.
  let s = noteCheckpoint(initialCollapseGuardState(), 0);
  s = observeHeldOutPass(s, cfg, { step: 0, passAt1: 0.45, n: 200 }).state;
  s = noteCheckpoint(s, 25);
  const noise = observeHeldOutPass(s, cfg, { step: 25, passAt1: 0.38, n: 200 });
  assert.equal(noise.decision.kind, "continue");
  assert.equal(noise.state.passStreak, null, "judged healthy");
  const real = observeHeldOutPass(noise.state, cfg, { step: 50, passAt1: 0.33, n: 200 });
  assert.equal(real.decision.kind, "rollback");
  // Without n (or with passZ 0) the fixed passDrop alone decides, as before.
  const fixed = observeHeldOutPass(s, { ...cfg, passZ: 0 }, { step: 25, passAt1: 0.38, n: 200 });
  assert.equal(fixed.decision.kind, "rollback");
});

test("after maxRollbacks the guard says stop", () => {
  let s = initialCollapseGuardState();
  let decision: CollapseDecision = { kind: "continue" };
  let from = 1;
  for (let round = 0; round <= cfg.maxRollbacks; round++) {
    const r = run(s, [...Array.from({ length: 40 }, () => 0.5), ...Array.from({ length: 20 }, () => 0)], from);
    s = r.state;
    decision = r.decision;
    if (round < cfg.maxRollbacks) {
      assert.equal(decision.kind, "rollback");
      if (decision.kind === "rollback") from = decision.toStep + 1;
    }
  }
  assert.equal(decision.kind, "stop");
  assert.equal(s.lrScale, 0.5 ** cfg.maxRollbacks);
});
