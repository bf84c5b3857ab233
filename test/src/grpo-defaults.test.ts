// One home for the GRPO defaults (issue 21 item 4): the api's spec defaults and the learner's
// recipe are the same values, and the api's own validation accepts them.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";

import { DEFAULT_GRPO, normalizeSpec } from "@rlmesh/api/job-spec";
import { LEARNER_RECIPE, resolveGrpoParams, type LearnerRecipe } from "@rlmesh/learner/trainer/learner-recipe";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

/** The api's spec defaults in the learner's terms (the only renamed fields: substitution, loss weighting). */
function recipeOf(spec: typeof DEFAULT_GRPO): LearnerRecipe {
  const { disableSubstitution, lossWeight, cartP, ...same } = spec;
  assert.equal(cartP, undefined, "cart_p has no default: it only means something with loss_weight cart");
  assert.equal(lossWeight, "inv_t");
  return { ...(same as Omit<LearnerRecipe, "substitution" | "lossWeighting">), substitution: !disableSubstitution, lossWeighting: { kind: "inv_t" } };
}

test("the api's GRPO spec defaults equal the learner's recipe, field by field", () => {
  assert.deepEqual(recipeOf(DEFAULT_GRPO), { ...LEARNER_RECIPE });
  // Every recipe field has a spec default (none left to a learner-only constant).
  assert.deepEqual(Object.keys(recipeOf(DEFAULT_GRPO)).sort(), Object.keys(LEARNER_RECIPE).sort());
});

test("a job spelling out the api's GRPO defaults trains exactly like one leaving them unset", () => {
  assert.deepEqual(resolveGrpoParams(DEFAULT_GRPO), resolveGrpoParams(null));
  assert.deepEqual(resolveGrpoParams({ ...DEFAULT_GRPO }, LEARNER_RECIPE), resolveGrpoParams({}, LEARNER_RECIPE));
});

test("the api's spec validation accepts its GRPO defaults and keeps unset fields unset", () => {
  const base = { modelDir: join(REPO_ROOT, "models/tiny-coder"), dataset: { path: join(REPO_ROOT, "datasets/toy/train.jsonl") } };
  assert.deepEqual(normalizeSpec({ ...base, grpo: { ...DEFAULT_GRPO } }).grpo, { ...DEFAULT_GRPO });
  assert.deepEqual(normalizeSpec(base).grpo, {});
});

test("a spec.grpo value the learner would refuse at the first TrainStep is refused at submit, naming the same field", () => {
  const base = { modelDir: join(REPO_ROOT, "models/tiny-coder"), dataset: { path: join(REPO_ROOT, "datasets/toy/train.jsonl") } };
  const cases: Record<string, number | string>[] = [
    { lr: 1 },
    { clipLow: 1 },
    { dualClip: 0.5 },
    { maskEpochs: 17 },
    { ppoEpochs: 64 },
    { tMin: 0 },
    { tMax: 1 },
    { tMax: 0.1 },
    { tMin: 0.9 },
    { klCoef: 0.01 },
    { entropyCoef: 0.01 },
    { maxGradNorm: 0 },
    { weightDecay: 1 },
    { cartP: 0.1 },
    { lossWeight: "cart", cartP: 1 },
    { advEstimator: "ppo" },
    { lossAgg: "sum" },
  ];
  const fieldOf = (msg: string, prefix: string) => msg.slice(prefix.length).split(":")[0] ?? "";
  for (const grpo of cases) {
    let learnerField = "";
    assert.throws(
      () => resolveGrpoParams(grpo),
      (e: unknown) => e instanceof Error && (learnerField = fieldOf(e.message, "params.")).length > 0,
      `learner accepts ${JSON.stringify(grpo)}`,
    );
    assert.throws(
      () => normalizeSpec({ ...base, grpo }),
      (e: unknown) => e instanceof Error && e.message.startsWith("spec.grpo.") && fieldOf(e.message, "spec.grpo.") === learnerField,
      `api ${JSON.stringify(grpo)}: expected spec.grpo.${learnerField}`,
    );
  }
  // And what the learner accepts, the api accepts.
  for (const grpo of [{ lr: 0 }, { dualClip: 1.5 }, { maskEpochs: 16 }, { lossWeight: "cart", cartP: 0.1 }, { tMin: 0.3, tMax: 0.3 }]) {
    resolveGrpoParams(grpo);
    normalizeSpec({ ...base, grpo });
  }
});
