import { test } from "node:test";
import assert from "node:assert/strict";
import { cutResponse, fillAfterEnd } from "./eos-rules.js";
import { applyPadPenalty, padPenaltyAt } from "./pad-penalty.js";

const special = { maskId: 9, padId: 0, eosId: 1 };

test("everything after the first EOS becomes PAD", () => {
  const ids = Int32Array.from([5, 5, 4, 9, 1, 9, 7, 1]);
  assert.equal(fillAfterEnd(ids, 2, 8, special), 7);
  assert.deepEqual(Array.from(ids), [5, 5, 4, 9, 1, 0, 0, 0]);
  // Prompt tokens before `start` are never read as an end.
  assert.equal(fillAfterEnd(Int32Array.from([1, 4, 4]), 1, 3, special), -1);
});

test("the response is cut at the first EOS (kept) or PAD (dropped)", () => {
  assert.deepEqual(cutResponse(Int32Array.from([7, 3, 4, 1, 0]), 1, 5, special), { tokenIds: [3, 4, 1], finished: true });
  assert.deepEqual(cutResponse(Int32Array.from([7, 3, 0, 0]), 1, 4, special), { tokenIds: [3], finished: true });
  assert.deepEqual(cutResponse(Int32Array.from([7, 3, 4]), 1, 3, special), { tokenIds: [3, 4], finished: false });
});

test("PAD penalty anneals linearly from pad_penalty to 0", () => {
  assert.equal(padPenaltyAt(3, 0), 3);
  assert.equal(padPenaltyAt(3, 0.5), 1.5);
  assert.equal(padPenaltyAt(3, 1), 0);
  const row = Float64Array.from([2, 2, 2]);
  applyPadPenalty(row, 0, 0, 1, 1.5);
  assert.deepEqual(Array.from(row), [0.5, 0.5, 2]);
});
