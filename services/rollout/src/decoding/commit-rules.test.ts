import { test } from "node:test";
import assert from "node:assert/strict";
import { factorCommit, originCommit, sampleKByConfidence, scheduledCount, thresholdCommit, topKIndices } from "./commit-rules.js";
import { counterUniform } from "./counter-rng.js";

test("threshold commits every confidence >= threshold", () => {
  assert.deepEqual(thresholdCommit([0.95, 0.5, 0.9, 0.89], 0.9), [0, 2]);
});

test("threshold always commits at least the most confident token", () => {
  assert.deepEqual(thresholdCommit([0.2, 0.7, 0.4], 0.9), [1]);
  assert.deepEqual(thresholdCommit([], 0.9), []);
});

test("threshold 1.0 commits exactly one token per step, even at probability 1", () => {
  assert.deepEqual(thresholdCommit([1, 1, 0.99], 1), [0]);
});

test("factor rule commits the top n with (n+1)(1-c_n) < factor", () => {
  // sorted: 0.99 (n=1, always), 0.9 -> 3*0.1=0.3 < 1 ok, 0.8 -> 4*0.2=0.8 < 1 ok, 0.7 -> 5*0.3=1.5 stop.
  assert.deepEqual(factorCommit([0.7, 0.99, 0.8, 0.9], 1), [1, 2, 3]);
  // A small factor keeps only the forced top token.
  assert.deepEqual(factorCommit([0.7, 0.99, 0.8, 0.9], 0.2), [1]);
  // All near-certain: everything goes.
  assert.deepEqual(factorCommit([0.999, 0.999, 0.999], 1), [0, 1, 2]);
});

test("scheduled count spreads the remaining masks evenly over the remaining steps", () => {
  assert.equal(scheduledCount(32, 32), 1);
  assert.equal(scheduledCount(32, 8), 4);
  assert.equal(scheduledCount(5, 2), 3);
  assert.equal(scheduledCount(5, 1), 5);
  const counts: number[] = [];
  let left = 10;
  for (let s = 4; s >= 1; s--) {
    const c = scheduledCount(left, s);
    counts.push(c);
    left -= c;
  }
  assert.deepEqual(counts, [3, 3, 2, 2]);
});

test("topK picks the highest scores, ties to the lower index", () => {
  assert.deepEqual(topKIndices([0.1, 0.5, 0.5, 0.9], 2), [1, 3]);
});

test("alg_temp sampling picks distinct positions, favouring confident ones", () => {
  const conf = [0.9, 0.1, 0.1, 0.1];
  let firstChosen = 0;
  for (let s = 0; s < 400; s++) {
    const u = conf.map((_, i) => counterUniform(s, 0, i, 1));
    const pick = sampleKByConfidence(conf, 2, 0.1, u);
    assert.equal(new Set(pick).size, 2);
    if (pick.includes(0)) firstChosen++;
  }
  assert.ok(firstChosen > 380, `confident position chosen ${firstChosen}/400`);
  // A high alg_temp flattens the order: the confident position is no longer always chosen.
  let hot = 0;
  for (let s = 0; s < 400; s++) {
    const u = conf.map((_, i) => counterUniform(s, 0, i, 1));
    if (sampleKByConfidence(conf, 1, 100, u).includes(0)) hot++;
  }
  assert.ok(hot > 60 && hot < 140, `near-uniform at high alg_temp: ${hot}/400`);
});

test("origin reveals each position with probability 1/stepsLeft, all on the last step", () => {
  assert.deepEqual(originCommit([0.1, 0.6, 0.2], 4), [0, 2]);
  assert.deepEqual(originCommit([0.9, 0.9], 1), [0, 1]);
});
