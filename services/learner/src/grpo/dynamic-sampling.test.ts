import { test } from "node:test";
import assert from "node:assert/strict";
import { filterInformativeGroups, isInformativeGroup, keepByDifficulty } from "./dynamic-sampling.js";

test("all-0 and all-1 groups are dropped and the shortfall is reported", () => {
  const groups = [
    { groupId: "a", rewards: [0, 0, 0] },
    { groupId: "b", rewards: [1, 1] },
    { groupId: "c", rewards: [0, 1] },
    { groupId: "d", rewards: [0.5, 0.5] },
    { groupId: "e", rewards: [1, 0, 1] },
  ];
  const r = filterInformativeGroups(groups, 3);
  assert.deepEqual(
    r.kept.map((g) => g.groupId),
    ["c", "e"],
  );
  assert.equal(r.dropped, 3);
  assert.equal(r.moreNeeded, 1);
  const enough = filterInformativeGroups(groups, 1);
  assert.deepEqual(
    enough.kept.map((g) => g.groupId),
    ["c"],
  );
  assert.equal(enough.moreNeeded, 0);
  assert.equal(isInformativeGroup([1]), false);
});

test("difficulty filter drops prompts solved G/G or 0/G", () => {
  assert.equal(keepByDifficulty(8, 8), false);
  assert.equal(keepByDifficulty(0, 8), false);
  assert.equal(keepByDifficulty(3, 8), true);
  assert.equal(keepByDifficulty(8, 8, { dropAllSolved: false }), true);
});
