import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, deriveSeed, rngFromState } from "./seeded-rng.js";

test("same seed, same stream; a saved state resumes exactly", () => {
  const a = createRng(123);
  const b = createRng(123);
  const xs = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(
    xs,
    Array.from({ length: 5 }, () => b.nextUint32()),
  );
  const saved = a.state();
  const next = Array.from({ length: 5 }, () => a.nextFloat());
  const resumed = rngFromState(saved);
  assert.deepEqual(
    Array.from({ length: 5 }, () => resumed.nextFloat()),
    next,
  );
  assert.notDeepEqual(
    Array.from({ length: 5 }, () => createRng(124).nextUint32()),
    xs,
  );
});

test("floats are uniform in [0, 1) and derived seeds differ per part", () => {
  const r = createRng(9);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const x = r.nextFloat();
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
  const seeds = new Set([deriveSeed(1, 0, 0), deriveSeed(1, 1, 0), deriveSeed(1, 0, 1), deriveSeed(2, 0, 0)]);
  assert.equal(seeds.size, 4);
  assert.equal(deriveSeed(1, 2, 3), deriveSeed(1, 2, 3));
});
