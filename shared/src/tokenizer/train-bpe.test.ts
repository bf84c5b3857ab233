import { test } from "node:test";
import assert from "node:assert/strict";
import { tokenizerFromJson } from "./load-tokenizer.js";
import { preTokenize } from "./pre-tokenize.js";
import { trainBpe } from "./train-bpe.js";

const CORPUS = [
  "Write a function f(x) that adds 3 to x, and returns the result.",
  "```python\ndef f(x):\n    return x + 3\n```",
  "Write a function f(x) that multiplies x by 12, and returns the result.",
  "```python\ndef f(x):\n    return x * 12\n```",
];

test("training is deterministic and writes a loadable HuggingFace tokenizer.json", () => {
  const a = trainBpe(CORPUS);
  assert.equal(JSON.stringify(a), JSON.stringify(trainBpe(CORPUS)));
  const tok = tokenizerFromJson(a, "in-memory");
  assert.deepEqual(tok.specialIds, { mask: 0, pad: 1, eos: 2, bos: 3 });
  assert.equal(tok.vocabSize, 4 + 256 + a.model.merges.length);
});

test("repeated words and numbers become single tokens, unseen numbers split into digits, and text round-trips", () => {
  const tok = tokenizerFromJson(trainBpe(CORPUS), "in-memory");
  for (const word of [" function", " returns", "def", " return", "python", "\n   "]) {
    assert.equal(tok.encode(word).length, 1, `${JSON.stringify(word)} -> ${tok.encode(word).length} tokens`);
  }
  // A whole number is one pre-token: a frequent one is one token, so its length never shifts
  // the positions of the code after it; an unseen one still encodes (as its digits).
  assert.deepEqual(preTokenize(" 12+3"), [" 12", "+", "3"]);
  assert.equal(tok.encode(" 12").length, 1);
  assert.equal(tok.decode(tok.encode(" 987")), " 987");
  assert.ok(tok.encode(" 987").length > 1);
  for (const text of [...CORPUS, "unseen wörds ✓ and\ttabs\r\n"]) assert.equal(tok.decode(tok.encode(text)), text);
});

test("the vocabulary cap and the minimum pair frequency stop merging", () => {
  assert.equal(trainBpe(CORPUS, { maxVocabSize: 270 }).model.merges.length, 10);
  const rare = trainBpe(["abc"], { minPairFrequency: 2 });
  assert.equal(rare.model.merges.length, 0);
});
