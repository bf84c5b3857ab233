import { test } from "node:test";
import assert from "node:assert/strict";
import { MixedVersionPolicy } from "./mixed-version-policy.js";
import type { GrpoPolicy } from "../grpo/grpo-update.js";
import type { NamedTensors } from "../optim/named-tensors.js";
import type { PolicyTokenBatch } from "../grpo/stacked-passes.js";

const current: NamedTensors = { w: { shape: [1], data: Float32Array.of(1) } };
const previous: NamedTensors = { w: { shape: [1], data: Float32Array.of(2) } };
/** Log-prob = the weight value, so the output shows which version answered each row. */
const inner: GrpoPolicy = {
  tokenLogProbs: async (w, b) => new Float32Array(b.batchSize * b.seqLen).fill(w["w"]!.data[0]!),
  lossAndGrad: async () => ({ loss: 0, logProbs: new Float32Array(), grads: {} }),
};
const stacked = (rows: number, T: number): PolicyTokenBatch => ({
  batchSize: rows,
  seqLen: T,
  inputIds: new Int32Array(rows * T),
  positionIds: new Int32Array(rows * T),
  attentionMask: new Float32Array(rows * T),
  targets: new Int32Array(rows * T),
});

test("old log-probs of each stacked row come from the version that generated its sample", async () => {
  const marker: NamedTensors = {};
  const p = new MixedVersionPolicy(inner, marker, current, previous, [false, true, false]);
  // 2 passes × 3 samples: stacked row r is sample r mod 3.
  const lp = await p.tokenLogProbs(marker, stacked(6, 2));
  assert.deepEqual([...lp], [1, 1, 2, 2, 1, 1, 1, 1, 2, 2, 1, 1]);
  // Any other weights (the gradient passes) go straight through.
  assert.deepEqual([...(await p.tokenLogProbs(previous, stacked(1, 2)))], [2, 2]);
});
