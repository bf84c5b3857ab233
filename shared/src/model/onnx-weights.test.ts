import assert from "node:assert/strict";
import { test } from "node:test";

import ort from "onnxruntime-node";

import { buildPolicyGraph, serializeModel } from "./graph-builder.js";
import { initWeights } from "./init-weights.js";
import { pastKeyName, pastValueName } from "./model-io-names.js";
import { TensorProto_DataType, valueInfoElemType } from "./onnx-proto.js";
import { modelBytes, parseModel, readWeights, replaceWeights, toDifferentiableGraph } from "./onnx-weights.js";
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

test("float16 weights: readWeights upcasts them exactly, a float32 swap runs the swapped values exactly, and the differentiable copy drops the Casts (node for node the float32 graph)", async () => {
  const w = initWeights(cfg, 5);
  const half = parseModel(serializeModel(buildPolicyGraph(cfg, w, { weightDtype: "float16" })));
  const read = readWeights(half);
  assert.deepEqual([...read.keys()].filter((n) => !n.startsWith("const.")), names, "every float16 weight is a weight");
  const rounded = new Map(names.map((n) => [n, read.get(n)!.data]));
  const wq = w.get("layers.0.attn.wq")!;
  const wqHalf = rounded.get("layers.0.attn.wq")!;
  assert.notDeepEqual(wqHalf, wq, "the stored values are rounded");
  assert.ok(maxAbsDiff(wqHalf, wq) <= 2 ** -11 * Math.max(...wq.map(Math.abs)), "to float16's precision");

  const T = 5;
  const ids = [3, 0, 7, 11, 2];
  const pos = [0, 1, 2, 3, 4];
  const mask = new Array(T).fill(1);
  // The float16 model computes what a float32 model with the rounded weights computes.
  const halfOut = await ortForward(await ortSession(modelBytes(half)), cfg, 1, ids, pos, mask);
  const roundedOut = await ortForward(await ortSession(serializeModel(buildPolicyGraph(cfg, rounded))), cfg, 1, ids, pos, mask);
  assert.ok(maxAbsDiff(halfOut.logits, roundedOut.logits) < 1e-5);
  // A float32 version swapped in runs exactly as a float32 model of those weights.
  const swapped = await ortForward(await ortSession(modelBytes(replaceWeights(half, w))), cfg, 1, ids, pos, mask);
  const full = await ortForward(await ortSession(serializeModel(buildPolicyGraph(cfg, w))), cfg, 1, ids, pos, mask);
  assert.equal(maxAbsDiff(swapped.logits, full.logits), 0);

  const diff = toDifferentiableGraph(half, names, past);
  const plain = toDifferentiableGraph(parseModel(serializeModel(buildPolicyGraph(cfg, w))), names, past);
  assert.ok(!diff.graph!.node.some((n) => n.opType === "Cast" && names.includes(n.input[0]!)), "no weight Cast left");
  assert.deepEqual(
    diff.graph!.node.map((n) => [n.opType, ...n.input]),
    plain.graph!.node.map((n) => [n.opType, ...n.input]),
  );
  assert.ok(diff.graph!.input.filter((v) => names.includes(v.name)).every((v) => valueInfoElemType(v) === TensorProto_DataType.FLOAT));
});
