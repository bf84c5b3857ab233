import { test } from "node:test";
import assert from "node:assert/strict";
import { pyFloorDiv, pyMod, pyRepr, pyStr } from "./python-values.js";

test("floor division and modulo follow Python for negative operands", () => {
  // Values from CPython: -7 // 2 == -4, -7 % 2 == 1, 7 % -3 == -2, -9 % 3 == 0.
  assert.equal(pyFloorDiv(-7, 2), -4);
  assert.equal(pyFloorDiv(7, 2), 3);
  assert.equal(pyMod(-7, 2), 1);
  assert.equal(pyMod(7, -3), -2);
  assert.ok(Object.is(pyMod(-9, 3), 0), "no negative zero");
  assert.throws(() => pyMod(1, 0), RangeError);
});

test("repr and print text match Python", () => {
  assert.equal(pyRepr([1, -2, 3]), "[1, -2, 3]");
  assert.equal(pyRepr([]), "[]");
  assert.equal(pyRepr("abC"), '"abC"');
  assert.equal(pyRepr(true), "True");
  assert.equal(pyStr("abC"), "abC");
  assert.equal(pyStr([4]), "[4]");
});
