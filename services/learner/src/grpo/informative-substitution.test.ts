import { test } from "node:test";
import assert from "node:assert/strict";
import { addSubstitution, gatherBySource, substituteZeroAdvantage } from "./informative-substitution.js";

test("zero-advantage slots get duplicates of nonzero ones, spread over donors; others stay", () => {
  const adv = [0, 1.2, 0, -0.7, 0, 0];
  const r = substituteZeroAdvantage(adv, 7);
  assert.equal(r.skipped, false);
  assert.equal(r.substituted, 4);
  assert.equal(r.sourceIndex[1], 1);
  assert.equal(r.sourceIndex[3], 3);
  const fills = [0, 2, 4, 5].map((i) => r.sourceIndex[i]!);
  for (const s of fills) assert.ok(s === 1 || s === 3, `slot filled from ${s}`);
  assert.equal(fills.filter((s) => s === 1).length, 2, "donors used evenly");
  const after = gatherBySource(adv, r.sourceIndex);
  assert.ok(after.every((a) => a !== 0));
});

test("substitution is deterministic given the seed", () => {
  const adv = [0, 0.5, 0, 0, -0.5, 0.1, 0, 0];
  assert.deepEqual(substituteZeroAdvantage(adv, 3), substituteZeroAdvantage(adv, 3));
  const differs = [4, 5, 6, 7, 8, 9].some(
    (s) => substituteZeroAdvantage(adv, s).sourceIndex.join() !== substituteZeroAdvantage(adv, 3).sourceIndex.join(),
  );
  assert.ok(differs, "the seed matters");
});

test("a batch with no informative sample is skipped and counted", () => {
  const r = substituteZeroAdvantage([0, 0, 1e-12], 1);
  assert.equal(r.skipped, true);
  assert.equal(r.substituted, 0);
  let totals = { batches: 0, skippedBatches: 0, substitutedSamples: 0 };
  totals = addSubstitution(totals, r);
  totals = addSubstitution(totals, substituteZeroAdvantage([0, 1], 1));
  assert.deepEqual(totals, { batches: 2, skippedBatches: 1, substitutedSamples: 1 });
});
