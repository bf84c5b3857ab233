import { test } from "node:test";
import assert from "node:assert/strict";
import type { JobEvent } from "@rlmesh/shared";
import { benchRlSpec, formatAblation, formatCurve, RL_VARIANTS, summarizeRlEvents } from "./bench-rl.js";
import { groupRewards, groupsToTrain, informativeGroupFraction } from "@rlmesh/api/coordinator/dynamic-sampling";
import { evalSplitName } from "@rlmesh/shared/eval-splits";
import { passRate } from "@rlmesh/api/coordinator/pass-at-1";
import { DEFAULT_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { normalizeSpec } from "@rlmesh/api/job-spec";
import { demoLrSchedule, demoSpec } from "./mesh-commands.js";
import { UsageError } from "./args.js";

let offset = 0;
const at = (ms: number, kind: Partial<JobEvent>): JobEvent => ({ offset: offset++, timeMs: ms, jobId: "j", ...kind });
const step = (ms: number, s: number, reward: number, inf: number, extra: Partial<NonNullable<JobEvent["step"]>> = {}) =>
  at(ms, {
    step: {
      step: s,
      rewardMean: reward,
      passRate: 0,
      informativeFraction: inf,
      samplesPolicyVersion: s - 1,
      trainedGroups: 8,
      promptsSkipped: 0,
      policyVersion: s,
      candidates: 64,
      timings: { seconds: { rollout: 2, reward: 0.5, train: 3, push: 0.1 } },
      train: null,
      ...extra,
    },
  });
const evalEv = (ms: number, s: number, split: string, mode: string, passed: number, n: number) => {
  const r = passRate(passed, n);
  return at(ms, { eval: { step: s, passAt1: r.passAt1, n, split, mode, responses: n, ciLow: r.ciLow, ciHigh: r.ciHigh, policyVersion: 0 } });
};

test("the learning curve has one point per primary greedy eval, with the rewards since the previous one", () => {
  const events = [
    at(0, { state: { fromState: "JOB_STATE_QUEUED", to: "JOB_STATE_RUNNING", reason: "started" } }),
    evalEv(1000, 0, "eval", "greedy", 20, 100),
    evalEv(1500, 0, "eval", "sampled", 60, 400),
    evalEv(2000, 0, "test-compositional", "greedy", 5, 100),
    step(10_000, 1, 0.2, 0.5),
    step(20_000, 2, 0.4, 0.75, { train: { guardAction: "rollback" } as NonNullable<NonNullable<JobEvent["step"]>["train"]> }),
    evalEv(60_000, 2, "eval", "greedy", 35, 100),
    evalEv(61_000, 2, "test-compositional", "greedy", 6, 100),
    at(90_000, { log: { level: "warn", message: "collapse guard (held-out): rollback: held-out pass@1 dropped" } }),
    at(120_000, { state: { fromState: "JOB_STATE_RUNNING", to: "JOB_STATE_SUCCEEDED", reason: "all steps done" } }),
  ];
  const r = summarizeRlEvents(events, { variant: "recipe", seed: 3, state: "JOB_STATE_SUCCEEDED" });
  assert.equal(r.curve.length, 2);
  assert.deepEqual(
    r.curve.map((p) => [p.step, p.minutes, p.pass_at_1, p.compositional, p.sampled]),
    [
      [0, 0.02, 0.2, 0.05, 0.15],
      [2, 1, 0.35, 0.06, null],
    ],
  );
  assert.ok(Number.isNaN(r.curve[0]!.reward_mean), "no step before the first eval");
  assert.equal(r.curve[1]!.reward_mean, 0.3);
  assert.equal(r.curve[1]!.informative_fraction, 0.625);
  assert.ok(r.curve[1]!.ci_low < 0.35 && r.curve[1]!.ci_high > 0.35);
  assert.equal(r.pass_at_1_before, 0.2);
  assert.equal(r.pass_at_1_after, 0.35);
  assert.equal(r.compositional_before, 0.05);
  assert.equal(r.compositional_after, 0.06);
  assert.equal(r.steps, 2);
  assert.equal(r.minutes, 2);
  assert.equal(r.seconds_per_step, 5.6);
  assert.deepEqual(r.phase_seconds_per_step, { rollout: 2, reward: 0.5, train: 3, push: 0.1 });
  assert.equal(r.rollbacks, 2, "a step-reward rollback and a held-out one");
  assert.ok(Number.isNaN(r.lr_first) && Number.isNaN(r.lr_last), "no train stats in these events");
  // The benchmark's JSON contract (issue 9).
  const json = JSON.parse(JSON.stringify(r)) as Record<string, unknown>;
  for (const k of ["pass_at_1_before", "pass_at_1_after", "minutes", "steps", "curve", "compositional_before", "compositional_after"]) {
    assert.ok(k in json, `JSON has ${k}`);
  }
  assert.match(formatCurve(r), /20\.0% \[13\.\d%, 28\.\d%\]/);
  assert.match(formatAblation([r, { ...r, variant: "no-warmup" }]), /no-warmup\s+20\.0%\s+35\.0%\s+15\.0 pt/);
  assert.equal(r.pass_at_1_last_iterate, null, "no moving average in this job");
  // A job with grpo.ema_decay: the trained weights' last_iterate eval comes before the final one (the average's).
  const ema = summarizeRlEvents(
    [...events.slice(0, -1), evalEv(100_000, 2, "eval", "last_iterate", 33, 100), evalEv(101_000, 2, "eval", "greedy", 38, 100), events.at(-1)!],
    { variant: "ema", seed: 3, state: "JOB_STATE_SUCCEEDED" },
  );
  assert.equal(ema.pass_at_1_last_iterate, 0.33);
  assert.equal(ema.pass_at_1_after, 0.38);
  assert.deepEqual(
    ema.curve.map((p) => p.step),
    [0, 2, 2],
    "the average's final eval is a curve point; the last iterate is not",
  );
});

test("the summary counts steps without an update, the informative fraction, skipped prompts and the first eval 10 points up", () => {
  const events = [
    evalEv(1000, 0, "eval", "greedy", 30, 100),
    step(2000, 1, 0, 0, { policyVersion: 0, promptsSkipped: 3 }), // no informative group: the version stays 0
    step(3000, 2, 0.5, 0.5, { policyVersion: 1, promptsSkipped: 1 }),
    evalEv(4000, 2, "eval", "greedy", 38, 100),
    step(5000, 3, 1, 0, { policyVersion: 1, promptsSkipped: 0 }),
    step(6000, 4, 0.5, 1, { policyVersion: 2, promptsSkipped: 0, train: { lr: 2e-5 } as NonNullable<NonNullable<JobEvent["step"]>["train"]> }),
    evalEv(7000, 4, "eval", "greedy", 40, 100),
  ];
  const r = summarizeRlEvents(events, { variant: "curriculum", seed: 2, state: "JOB_STATE_SUCCEEDED" });
  assert.equal(r.steps_without_update, 2);
  assert.equal(r.informative_fraction_mean, 0.375);
  assert.equal(r.prompts_skipped_per_step, 1);
  assert.equal(r.steps_to_plus_10, 4);
  assert.equal(r.lr_last, 2e-5, "the last step's TrainStats.lr");
  assert.equal(summarizeRlEvents(events.slice(0, 4), { variant: "c", seed: 2, state: "s" }).steps_to_plus_10, null);
  assert.match(formatAblation([r]), /curriculum\s+30\.0%\s+40\.0%\s+10\.0 pt.*0\.38\s+2\s+4$/m);
});

test("bench specs: every variant changes the recipe it names, and an unknown one is refused", () => {
  const o = { seed: 1, minutes: 2, evalInterval: 10, evalSamples: 4, evalLimit: 50, modelDir: DEFAULT_MODEL_DIR };
  const recipe = benchRlSpec({ ...o, variant: "recipe" });
  assert.equal(recipe.maxMinutes, 2);
  assert.equal(recipe.evalSamples, 4);
  assert.equal(recipe.evalDataset?.limit, 50);
  assert.match(String(recipe.extraEvalDatasets?.[0]?.path), /test-compositional\.jsonl$/);
  for (const name of Object.keys(RL_VARIANTS).filter((n) => n !== "recipe")) {
    assert.notDeepEqual(benchRlSpec({ ...o, variant: name }), { ...recipe, name: `bench-rl-${name}` }, name);
  }
  assert.throws(() => benchRlSpec({ ...o, variant: "nope" }), /unknown variant "nope"/);
  const both = benchRlSpec({ ...o, variant: "lr-3e-4+oversample-3" });
  assert.equal(both.grpo?.lr, 3e-4);
  assert.equal(both.oversample, 3);
  assert.deepEqual(benchRlSpec({ ...o, variant: "curriculum" }).curriculum, { window: 2, explore: 0.1 });
  assert.deepEqual(benchRlSpec({ ...o, variant: "curriculum-1+oversample-2" }).curriculum, { window: 1, explore: 0.1 });
  assert.throws(() => benchRlSpec({ ...o, variant: "lr-3e-4+nope" }), /unknown variant "nope"/);
  const cart = benchRlSpec({ ...o, variant: "cart" });
  assert.equal(cart.grpo?.lossWeight, "cart");
  assert.equal(cart.grpo?.cartP, 0.1);
  assert.equal(benchRlSpec({ ...o, variant: "cart+inv-t" }).grpo?.lossWeight, "inv_t");
  assert.equal(benchRlSpec({ ...o, variant: "cart+inv-t" }).grpo?.cartP, undefined);
  // LR decay over the run: the recipe leaves lr_schedule unset (constant), lr-cosine asks for the cosine.
  assert.equal(recipe.lrSchedule, undefined);
  assert.deepEqual(benchRlSpec({ ...o, steps: 40, variant: "lr-cosine" }).lrSchedule, { decay: "cosine", decayStart: 0.5, minRatio: 0.1 });
  assert.equal(benchRlSpec({ ...o, variant: "lr-cosine+lr-3e-4" }).grpo?.lr, 3e-4);
  // --steps fixes the work: the job runs that many steps (the recipe alone runs until its budget).
  assert.equal(benchRlSpec({ ...o, steps: 40, variant: "cart" }).steps, 40);
  assert.ok(Number(recipe.steps) > 100_000);
});

test("informative fraction counts groups with unequal rewards; split names come from the file", () => {
  const g = (group: string, reward: number) => ({ group, reward });
  assert.equal(informativeGroupFraction(groupRewards([g("a", 1), g("a", 0), g("b", 0), g("b", 0), g("c", 1), g("c", 1), g("d", 1), g("d", 0)])), 0.5);
  assert.equal(informativeGroupFraction(groupRewards([])), 0);
  assert.equal(evalSplitName("/x/datasets/toy/test-compositional.jsonl"), "test-compositional");
  assert.equal(evalSplitName("C:\\data\\held.json"), "held");
});

test("dynamic sampling keeps informative groups first, then the rest in rollout order, up to the limit", () => {
  const g = (group: string, reward: number) => ({ group, reward });
  const items = groupRewards([g("0", 0), g("0", 0), g("1", 1), g("1", 0), g("2", 1), g("2", 1), g("3", 0), g("3", 1)]);
  assert.deepEqual([...groupsToTrain(items, 2)], ["1", "3"]);
  assert.deepEqual([...groupsToTrain(items, 3)], ["1", "3", "0"]);
  assert.deepEqual([...groupsToTrain(items, 10)].sort(), ["0", "1", "2", "3"]);
});

test("demo --lr-schedule: unset is cosine (decay_start 0.5, min_ratio 0.1) and the api accepts it; constant is asked for by name", () => {
  assert.deepEqual(demoLrSchedule(undefined), { decay: "cosine", decayStart: 0.5, minRatio: 0.1 });
  assert.deepEqual(demoLrSchedule("constant"), { decay: "constant" });
  const cosine = demoLrSchedule("cosine");
  assert.deepEqual(cosine, { decay: "cosine", decayStart: 0.5, minRatio: 0.1 });
  assert.throws(() => demoLrSchedule("linear"), (e: unknown) => e instanceof UsageError && /--lr-schedule must be one of constant, cosine, got "linear"/.test(e.message));
  const spec = normalizeSpec({ ...demoSpec(100, 1, DEFAULT_MODEL_DIR), maxMinutes: 14, lrSchedule: cosine });
  assert.deepEqual(spec.lrSchedule, { decay: "cosine", decayStart: 0.5, minRatio: 0.1 });
  assert.equal(normalizeSpec(demoSpec(100, 1, DEFAULT_MODEL_DIR)).lrSchedule.decay, "constant", "a spec without lr_schedule (a submitted job's) stays constant");
});
