import { test } from "node:test";
import assert from "node:assert/strict";
import { counterUniform, deriveSeed } from "./counter-rng.js";

test("draws are a pure function of (seed, step, position, stream)", () => {
  assert.equal(counterUniform(7, 3, 11, 0), counterUniform(7, 3, 11, 0));
  assert.notEqual(counterUniform(7, 3, 11, 0), counterUniform(7, 3, 11, 1));
  assert.notEqual(counterUniform(7, 3, 11, 0), counterUniform(8, 3, 11, 0));
  assert.notEqual(counterUniform(2 ** 40, 0, 0, 0), counterUniform(2 ** 40 + 2 ** 32, 0, 0, 0));
});

test("draws are uniform in (0, 1)", () => {
  const n = 20000;
  const bins = new Array(10).fill(0);
  for (let i = 0; i < n; i++) {
    const u = counterUniform(42, i, i % 7, 0);
    assert.ok(u > 0 && u < 1);
    bins[Math.floor(u * 10)]++;
  }
  for (const b of bins) assert.ok(Math.abs(b - n / 10) < 0.06 * (n / 10), `bin ${b}`);
});

test("derived seeds differ per sample and are stable", () => {
  const s = new Set(Array.from({ length: 1000 }, (_, i) => deriveSeed(5, i)));
  assert.equal(s.size, 1000);
  assert.equal(deriveSeed(5, 3), deriveSeed(5, 3));
  assert.ok(Number.isSafeInteger(deriveSeed(2 ** 52, 9)));
});
