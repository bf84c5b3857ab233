import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng } from "./prng.js";

const draws = (seed: string, n: number): number[] => {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.next());
};

test("the same seed gives the same sequence, another seed a different one", () => {
  assert.deepEqual(draws("a", 50), draws("a", 50));
  assert.notDeepEqual(draws("a", 50), draws("b", 50));
});

test("int stays inside its inclusive bounds and reaches both ends", () => {
  const rng = createRng("bounds");
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = rng.int(-2, 3);
    assert.ok(v >= -2 && v <= 3, `out of range: ${v}`);
    seen.add(v);
  }
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    [-2, -1, 0, 1, 2, 3],
  );
});

test("fork depends on the label only, not on how much the parent was used", () => {
  const a = createRng("p");
  const b = createRng("p");
  b.next();
  b.next();
  assert.equal(a.fork("x").next(), b.fork("x").next());
  assert.notEqual(a.fork("x").next(), a.fork("y").next());
});

test("shuffle is a permutation and leaves its input alone", () => {
  const input = [1, 2, 3, 4, 5, 6, 7, 8];
  const out = createRng("s").shuffle(input);
  assert.deepEqual(input, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(
    [...out].sort((a, b) => a - b),
    input,
  );
});
