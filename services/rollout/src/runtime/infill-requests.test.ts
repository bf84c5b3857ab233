import { test } from "node:test";
import assert from "node:assert/strict";
import type { InfilledSequence } from "../decoding/infill-decoder.js";
import type { LengthCandidate } from "../decoding/infill-length-search.js";
import { chooseLengthCandidate } from "./infill-requests.js";

// Middle ids are the characters' codes: the "tokenizer" of these tests.
const text = (ids: number[]) => String.fromCharCode(...ids);
const ids = (s: string) => [...s].map((c) => c.charCodeAt(0));
const cand = (middle: string, score: number, variable = false): LengthCandidate => ({
  middleIds: ids(middle),
  score,
  variable,
  decode: { steps: 1, expands: variable ? 1 : 0, deletes: 0, logProb: -1 },
});

function searched(candidates: LengthCandidate[]): InfilledSequence {
  return { middleIds: candidates[0]!.middleIds, nfe: 1, steps: 1, expands: 0, deletes: 0, logProb: -1, decodeSeconds: 0, candidates };
}

const prefix = "```python\ndef f(x):\n";
const suffix = "\n```";
const programOf = (m: number[]) => prefix + text(m) + suffix;

test("length search: the best-scored candidate whose program passes the syntax check is chosen", () => {
  const seq = searched([cand("    return (x +)", -1), cand("    return x x", -2, true), cand("    return x + 1", -3), cand("    return x", -4)]);
  const pick = chooseLengthCandidate(seq, { syntax_check: "python" }, programOf)!;
  assert.equal(text(pick.chosen.middleIds), "    return x + 1");
  assert.equal(pick.screenedOut, 2);
  assert.equal(pick.variableLength, "    return x x".length, "the expand/delete decode's own length");
});

test("length search: with no candidate passing, or syntax_check none, or no tokenizer, the best-scored one is chosen", () => {
  const bad = searched([cand("    return (", -1), cand("    return )", -2)]);
  assert.equal(text(chooseLengthCandidate(bad, { syntax_check: "python" }, programOf)!.chosen.middleIds), "    return (");
  assert.equal(chooseLengthCandidate(bad, { syntax_check: "python" }, programOf)!.screenedOut, 2);
  const seq = searched([cand("    return (x +)", -1), cand("    return x", -2)]);
  assert.equal(text(chooseLengthCandidate(seq, { syntax_check: "none" }, programOf)!.chosen.middleIds), "    return (x +)");
  assert.equal(text(chooseLengthCandidate(seq, { syntax_check: "python" }, undefined)!.chosen.middleIds), "    return (x +)");
});

test("without a length search there is nothing to choose", () => {
  const { candidates: _c, ...plain } = searched([cand("    return x", 0)]);
  assert.equal(chooseLengthCandidate(plain, { syntax_check: "python" }, programOf), undefined);
});
