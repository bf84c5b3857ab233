import { test } from "node:test";
import assert from "node:assert/strict";
import { padBatchToBucket } from "./batch-bucket.js";
import type { GrpoBatch } from "../grpo/grpo-batch.js";

const batch: GrpoBatch = {
  batchSize: 2,
  seqLen: 3,
  tokens: Int32Array.from([5, 6, 7, 8, 9, 1]),
  attentionMask: Uint8Array.from([1, 1, 1, 1, 1, 0]),
  responseMask: Uint8Array.from([0, 1, 1, 0, 1, 0]),
  advantages: [1, -1],
};

test("rows are right-padded to the bucket with PAD and zero masks", () => {
  const p = padBatchToBucket(batch, 1, 64, 4);
  assert.equal(p.seqLen, 4);
  assert.deepEqual([...p.tokens], [5, 6, 7, 1, 8, 9, 1, 1]);
  assert.deepEqual([...p.attentionMask], [1, 1, 1, 0, 1, 1, 0, 0]);
  assert.deepEqual([...p.responseMask], [0, 1, 1, 0, 0, 1, 0, 0]);
  assert.deepEqual(p.advantages, [1, -1]);
});

test("never beyond max_seq_len, and a batch already on a bucket is returned as is", () => {
  assert.equal(padBatchToBucket(batch, 1, 3, 16), batch);
  assert.equal(padBatchToBucket(batch, 1, 64, 3), batch);
  assert.equal(padBatchToBucket(batch, 1, 10, 16).seqLen, 10);
});
