import { test } from "node:test";
import assert from "node:assert/strict";
import { groupAdvantages } from "./group-advantages.js";

const close = (a: number, b: number, tol = 1e-6): void => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

test("GRPO advantages: (r - group mean) / (unbiased group std + eps), groups may interleave", () => {
  // group "a" = [1, 0, 0, 1]: mean 0.5, std sqrt(1/3) -> ±0.5/0.57735 = ±0.866025
  const { advantages, stats } = groupAdvantages([1, 1, 0, 1, 0, 1, 0.3], ["a", "b", "a", "b", "a", "a", "c"]);
  const expected = 0.5 / (Math.sqrt(1 / 3) + 1e-6);
  close(advantages[0]!, expected);
  close(advantages[2]!, -expected);
  close(advantages[4]!, -expected);
  close(advantages[5]!, expected);
  // "b" is all-equal and "c" has one sample: no baseline, zero advantage
  assert.equal(advantages[1], 0);
  assert.equal(advantages[3], 0);
  assert.equal(advantages[6], 0);
  assert.equal(stats.groups, 3);
  assert.equal(stats.zeroVarianceGroups, 2);
});

test("Dr.GRPO option only centres rewards (no std division)", () => {
  const { advantages } = groupAdvantages([1, 0, 0, 0], [0, 0, 0, 0], { scaleByStd: false });
  assert.deepEqual(Array.from(advantages), [0.75, -0.25, -0.25, -0.25]);
});

test("advantages in a group sum to zero and rejects mismatched or non-finite input", () => {
  const r = [0.2, 0.9, 0.4, 0.7, 0.1];
  const { advantages } = groupAdvantages(r, [1, 1, 1, 1, 1]);
  close(
    advantages.reduce((s, a) => s + a, 0),
    0,
    1e-9,
  );
  assert.throws(() => groupAdvantages([1, 2], [0]), RangeError);
  assert.throws(() => groupAdvantages([Number.NaN, 1], [0, 0]), RangeError);
});
