import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError, type GrpoParams } from "@rlmesh/shared";
import { LEARNER_RECIPE, resolveGrpoParams } from "./learner-recipe.js";

const p = (x: Partial<GrpoParams>) => x as GrpoParams;

test("unset GrpoParams take the recipe's defaults", () => {
  const r = resolveGrpoParams(null);
  assert.equal(r.schedule.baseLr, LEARNER_RECIPE.lr);
  assert.equal(r.schedule.warmupSteps, LEARNER_RECIPE.warmupSteps);
  assert.equal(r.update.loss.clipEpsLow, 0.2);
  assert.equal(r.update.loss.clipEpsHigh, 0.28);
  assert.equal(r.update.loss.dualClipC, null);
  assert.equal(r.update.loss.aggregation, "token-mean");
  assert.equal(r.update.loss.maskWeightPlacement, "loss");
  assert.equal(r.update.loss.klCoef, 0);
  assert.equal(r.update.maskEpochs, 1);
  assert.equal(r.update.ppoEpochs, 1);
  assert.deepEqual(r.update.mask, { tMin: 0.2, tMax: 0.8, weighting: { kind: "inv_t" } });
  assert.equal(r.update.maxGradNorm, 1);
  assert.equal(r.update.adamw.weightDecay, 0);
  assert.equal(r.substitute, true);
  assert.deepEqual(r.advantage, { scaleByStd: true });
  assert.deepEqual(resolveGrpoParams(p({})), r);
});

test("set fields override the recipe, zero included where zero is meaningful", () => {
  const r = resolveGrpoParams(p({ lr: 5e-5, warmupSteps: 0, clipHigh: 0.2, dualClip: 3, advEstimator: "drgrpo", lossAgg: "seq-mean-token-mean", maskEpochs: 2, ppoEpochs: 3, tMin: 0.1, tMax: 0.9, disableSubstitution: true, weightInRatio: true, weightDecay: 0.01 }));
  assert.equal(r.schedule.baseLr, 5e-5);
  assert.equal(r.schedule.warmupSteps, 0);
  assert.equal(r.update.loss.clipEpsHigh, 0.2);
  assert.equal(r.update.loss.dualClipC, 3);
  assert.equal(r.update.loss.aggregation, "seq-mean-token-mean");
  assert.equal(r.update.loss.maskWeightPlacement, "ratio");
  assert.equal(r.update.maskEpochs, 2);
  assert.equal(r.update.ppoEpochs, 3);
  assert.deepEqual(r.update.mask, { tMin: 0.1, tMax: 0.9, weighting: { kind: "inv_t" } });
  assert.equal(r.update.adamw.weightDecay, 0.01);
  assert.equal(r.substitute, false);
  assert.deepEqual(r.advantage, { scaleByStd: false });
});

test("out-of-range or unsupported params name the field", () => {
  const cases: [Partial<GrpoParams>, RegExp][] = [
    [{ lr: -1 }, /^params\.lr: must be in \[0, 1\)/],
    [{ clipLow: 1 }, /^params\.clip_low/],
    [{ dualClip: 0.5 }, /^params\.dual_clip: must be 0 \(off\) or > 1/],
    [{ advEstimator: "ppo" }, /^params\.adv_estimator: must be grpo or drgrpo/],
    [{ maskEpochs: 0 }, /^params\.mask_epochs: must be an integer in \[1, 16\]/],
    [{ ppoEpochs: 1.5 }, /^params\.ppo_epochs/],
    [{ tMin: 0.5, tMax: 0.4 }, /^params\.t_max: must be in \[t_min=0\.5, 1\)/],
    [{ klCoef: 0.01 }, /^params\.kl_coef: must be 0/],
    [{ entropyCoef: 0.01 }, /^params\.entropy_coef: must be 0/],
    [{ maxGradNorm: 0 }, /^params\.max_grad_norm: must be > 0/],
    [{ warmupSteps: -1 }, /^params\.warmup_steps/],
    [{ lossWeight: "linear" }, /^params\.loss_weight: must be one of inv_t, cart, got "linear"/],
    [{ lossWeight: "cart", cartP: 1 }, /^params\.cart_p: must be in \(0, 1\), got 1/],
    [{ lossWeight: "cart", cartP: 0 }, /^params\.cart_p: must be in \(0, 1\), got 0/],
    [{ cartP: 0.1 }, /^params\.cart_p: applies only to loss_weight cart/],
  ];
  for (const [params, re] of cases) {
    assert.throws(() => resolveGrpoParams(p(params)), (err: unknown) => err instanceof InvalidArgumentError && re.test(err.message), String(re));
  }
});

test("loss_weight cart selects CART weights (p from cart_p, Dream-Coder's 0.1 when unset); inv_t is the default", () => {
  assert.deepEqual(resolveGrpoParams(p({ lossWeight: "cart" })).update.mask.weighting, { kind: "cart", p: 0.1 });
  assert.deepEqual(resolveGrpoParams(p({ lossWeight: "cart", cartP: 0.3 })).update.mask.weighting, { kind: "cart", p: 0.3 });
  assert.deepEqual(resolveGrpoParams(p({ lossWeight: "inv_t" })).update.mask.weighting, { kind: "inv_t" });
  assert.deepEqual(LEARNER_RECIPE.lossWeighting, { kind: "inv_t" });
  // A recipe whose default is CART: unset fields take its p, an explicit inv_t still wins.
  const cartRecipe = { ...LEARNER_RECIPE, lossWeighting: { kind: "cart" as const, p: 0.2 } };
  assert.deepEqual(resolveGrpoParams(null, cartRecipe).update.mask.weighting, { kind: "cart", p: 0.2 });
  assert.deepEqual(resolveGrpoParams(p({ lossWeight: "inv_t" }), cartRecipe).update.mask.weighting, { kind: "inv_t" });
});
