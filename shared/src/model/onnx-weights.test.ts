import assert from "node:assert/strict";
import { test } from "node:test";

import ort from "onnxruntime-node";

import { buildPolicyGraph, serializeModel } from "./graph-builder.js";
import { initWeights } from "./init-weights.js";
import { pastKeyName, pastValueName } from "./model-io-names.js";
import { modelBytes, parseModel, readWeights, toDifferentiableGraph } from "./onnx-weights.js";
import { maxAbsDiff, ortForward, ortSession, TEST_CONFIG } from "./ort-test-helpers.js";
import { weightLayout } from "./weight-layout.js";

const cfg = TEST_CONFIG;
const names = weightLayout(cfg).map((s) => s.name);
const past = Array.from({ length: cfg.nLayers }, (_, i) => [pastKeyName(i), pastValueName(i)]).flat();

test("readWeights returns every trained tensor with its shape and values", () => {
  const w = initWeights(cfg, 4);
  const read = readWeights(parseModel(serializeModel(buildPolicyGraph(cfg, w))), names);
  assert.deepEqual([...read.keys()], names);
  assert.deepEqual(read.get("lm_head")!.shape, [cfg.dModel, cfg.vocabSize]);
  assert.deepEqual(read.get("layers.1.attn.wk")!.data, w.get("layers.1.attn.wk"));
});

test("the differentiable copy takes weights as inputs, has no past inputs, and computes the same logits", async () => {
  const w = initWeights(cfg, 4);
  for (const [n, d] of w) if (!n.endsWith("norm")) for (let i = 0; i < d.length; i++) d[i] = d[i]! * 20;
  const original = serializeModel(buildPolicyGraph(cfg, w));
  const diff = toDifferentiableGraph(parseModel(original), names, past);
  const inputNames = diff.graph!.input.map((v) => v.name);
  assert.deepEqual(inputNames, ["input_ids", "position_ids", "attention_mask", ...names]);
  assert.ok(!diff.graph!.initializer.some((t) => names.includes(t.name)), "weights are no longer initializers");

  const T = 6;
  const ids = [4, 9, 0, 0, 13, 2];
  const pos = [0, 1, 2, 3, 4, 5];
  const expected = await ortForward(await ortSession(original), cfg, 1, ids, pos, new Array(T).fill(1));
  const session = await ort.InferenceSession.create(modelBytes(diff));
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (v) => BigInt(v)),
      [1, T],
    ),
    position_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(pos, (v) => BigInt(v)),
      [1, T],
    ),
    attention_mask: new ort.Tensor("float32", new Float32Array(T).fill(1), [1, T]),
  };
  for (const spec of weightLayout(cfg)) feeds[spec.name] = new ort.Tensor("float32", w.get(spec.name)!, spec.shape);
  const got = (await session.run(feeds))["logits"]!.data as Float32Array;
  assert.ok(maxAbsDiff(got, expected.logits) < 1e-5);
});

test("toDifferentiableGraph names weights that the model does not have", () => {
  const model = parseModel(serializeModel(buildPolicyGraph(cfg, initWeights(cfg, 1))));
  assert.throws(() => toDifferentiableGraph(model, [...names, "extra.w"], past), /missing weights extra\.w/);
});
