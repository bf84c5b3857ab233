import { test } from "node:test";
import assert from "node:assert/strict";
import { buildGrpoBatch, type ScoredSample } from "./grpo-batch.js";

const samples: ScoredSample[] = [
  { groupId: "p", promptIds: [7, 8], responseIds: [1, 2, 3], reward: 1 },
  { groupId: "p", promptIds: [7, 8], responseIds: [4], reward: 0 },
  { groupId: "q", promptIds: [9], responseIds: [5, 6], reward: 1 },
  { groupId: "q", promptIds: [9], responseIds: [6, 5], reward: 1 },
];

test("rows are prompt + response, right-padded; only response tokens are in the loss", () => {
  const built = buildGrpoBatch(samples, { padId: 0, seed: 1 });
  const b = built.batch!;
  assert.equal(b.seqLen, 5);
  assert.deepEqual(Array.from(b.tokens.subarray(0, 5)), [7, 8, 1, 2, 3]);
  assert.deepEqual(Array.from(b.responseMask.subarray(0, 5)), [0, 0, 1, 1, 1]);
  assert.deepEqual(Array.from(b.tokens.subarray(5, 10)), [7, 8, 4, 0, 0]);
  assert.deepEqual(Array.from(b.attentionMask.subarray(5, 10)), [1, 1, 1, 0, 0]);
  assert.equal(built.rewardMean, 0.75);
});

test("group q has zero advantage, so its rows become duplicates of group p's samples", () => {
  const built = buildGrpoBatch(samples, { padId: 0, seed: 1 });
  assert.equal(built.substituted, 2);
  assert.deepEqual(Array.from(built.sourceIndex.subarray(0, 2)), [0, 1]);
  for (const r of [2, 3]) assert.ok([0, 1].includes(built.sourceIndex[r]!));
  const adv = Array.from(built.batch!.advantages);
  assert.ok(adv.every((a) => a !== 0));
  const noSub = buildGrpoBatch(samples, { padId: 0, seed: 1, substitute: false });
  assert.deepEqual(Array.from(noSub.batch!.advantages).slice(2), [0, 0]);
});

test("a batch where every group is all-equal is skipped", () => {
  const built = buildGrpoBatch(samples.slice(2), { padId: 0, seed: 1 });
  assert.equal(built.skipped, true);
  assert.equal(built.batch, null);
});

test("an empty response is a legal sample: it counts in its group's advantages with its reward, and gets no row", () => {
  const withEmpty: ScoredSample[] = [
    { groupId: "p", promptIds: [7, 8], responseIds: [1, 2], reward: 1 },
    { groupId: "p", promptIds: [7, 8], responseIds: [], reward: 0 },
    { groupId: "p", promptIds: [7, 8], responseIds: [3], reward: 0 },
  ];
  const built = buildGrpoBatch(withEmpty, { padId: 0, seed: 1, substitute: false });
  // Group mean 1/3: the empty sample pulls the others' advantages like any reward-0 sample.
  assert.ok(built.advantages[0]! > 0 && built.advantages[1]! < 0 && built.advantages[2]! < 0);
  assert.equal(built.advantages[1], built.advantages[2]);
  assert.deepEqual(Array.from(built.sourceIndex), [0, 2]);
  const b = built.batch!;
  assert.equal(b.batchSize, 2);
  assert.deepEqual(Array.from(b.tokens), [7, 8, 1, 2, 7, 8, 3, 0]);
  assert.deepEqual(Array.from(b.advantages), [built.advantages[0], built.advantages[2]]);
  // Nothing but empty responses: nothing to train on, the step is skipped (not an error).
  const allEmpty = buildGrpoBatch(
    [
      { groupId: "p", promptIds: [7], responseIds: [], reward: 1 },
      { groupId: "p", promptIds: [7], responseIds: [], reward: 0 },
    ],
    { padId: 0, seed: 1 },
  );
  assert.equal(allEmpty.skipped, true);
  assert.equal(allEmpty.batch, null);
});

test("infill samples: the suffix follows the response, attended and outside the loss (responseMask 0)", () => {
  const infill: ScoredSample[] = [
    { groupId: "p", promptIds: [7, 8], responseIds: [1, 2], suffixIds: [30, 31], reward: 1 },
    { groupId: "p", promptIds: [7, 8], responseIds: [4], suffixIds: [30, 31], reward: 0 },
  ];
  const b = buildGrpoBatch(infill, { padId: 0, seed: 1 }).batch!;
  assert.equal(b.seqLen, 6);
  assert.deepEqual(Array.from(b.tokens.subarray(0, 6)), [7, 8, 1, 2, 30, 31]);
  assert.deepEqual(Array.from(b.responseMask.subarray(0, 6)), [0, 0, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(b.attentionMask.subarray(0, 6)), [1, 1, 1, 1, 1, 1]);
  // A shorter middle: its suffix moves left with it, PAD after.
  assert.deepEqual(Array.from(b.tokens.subarray(6, 12)), [7, 8, 4, 30, 31, 0]);
  assert.deepEqual(Array.from(b.responseMask.subarray(6, 12)), [0, 0, 1, 0, 0, 0]);
  assert.deepEqual(Array.from(b.attentionMask.subarray(6, 12)), [1, 1, 1, 1, 1, 0]);
});
