import assert from "node:assert/strict";
import { test } from "node:test";

import ort from "onnxruntime-node";

import { buildPolicyGraph, initWeights, serializeModel } from "@rlmesh/shared/model/index";
import type { PolicyModelConfig } from "@rlmesh/shared/model/index";

import { JaxPolicy } from "./jax-policy.js";
import type { TokenBatch, WeightTensors } from "./jax-policy.js";
import { initJax } from "./jax-runtime.js";

const cfg: PolicyModelConfig = { vocabSize: 29, dModel: 16, nLayers: 2, nHeads: 2, ffDim: 24, maxSeqLen: 16, normEps: 1e-5 };
const B = 2;
const T = 7;

function modelBytes(config: PolicyModelConfig = cfg): Uint8Array {
  const w = initWeights(config, 5);
  for (const [name, data] of w) if (!name.endsWith("norm")) for (let i = 0; i < data.length; i++) data[i] = data[i]! * 20;
  return serializeModel(buildPolicyGraph(config, w));
}

const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 3) % cfg.vocabSize);
// Row 1 has two padding keys at the end.
const mask = Float32Array.from({ length: B * T }, (_, i) => (i >= T && i % T >= 5 ? 0 : 1));
const batch: TokenBatch = {
  batchSize: B,
  seqLen: T,
  inputIds: ids,
  positionIds: Int32Array.from({ length: B * T }, (_, i) => i % T),
  attentionMask: mask,
  targets: Int32Array.from({ length: B * T }, (_, i) => (i * 3 + 1) % cfg.vocabSize),
};

async function ortLogits(bytes: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const empty = new ort.Tensor("float32", new Float32Array(0), [B, cfg.nHeads, 0, cfg.dModel / cfg.nHeads]);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (v) => BigInt(v)),
      [B, T],
    ),
    position_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(batch.positionIds, (v) => BigInt(v)),
      [B, T],
    ),
    attention_mask: new ort.Tensor("float32", mask, [B, T]),
  };
  for (let i = 0; i < cfg.nLayers; i++) feeds[`past_key_${i}`] = feeds[`past_value_${i}`] = empty;
  return (await session.run(feeds))["logits"]!.data as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function setup(): Promise<{ bytes: Uint8Array; policy: JaxPolicy }> {
  await initJax();
  const bytes = modelBytes();
  return { bytes, policy: JaxPolicy.fromModelBytes(bytes, { nLayers: cfg.nLayers, vocabSize: cfg.vocabSize }) };
}

test("jax-js forward of the rollout's ONNX file matches onnxruntime on the same weights", async () => {
  const { bytes, policy } = await setup();
  const expected = await ortLogits(bytes);
  const got = await policy.logits(policy.initialWeights(), batch);
  const scale = Math.max(...expected.map(Math.abs));
  assert.ok(scale > 1, "logits are not trivially small");
  assert.ok(maxAbsDiff(got, expected) < 1e-4 * scale, `max abs diff ${maxAbsDiff(got, expected)}`);
});

test("token log-probs are log-softmax of the logits at the target ids", async () => {
  const { policy } = await setup();
  const w = policy.initialWeights();
  const logits = await policy.logits(w, batch);
  const lp = await policy.tokenLogProbs(w, batch);
  const V = cfg.vocabSize;
  for (let k = 0; k < B * T; k++) {
    const row = logits.subarray(k * V, (k + 1) * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    assert.ok(Math.abs(lp[k]! - (row[batch.targets[k]!]! - lse)) < 1e-4);
  }
});

test("weightedNllGrad matches central finite differences on every kind of weight", async () => {
  const { policy } = await setup();
  const tw = Float32Array.from({ length: B * T }, (_, i) => (i % 3 === 0 ? 0.3 : i % 5 === 0 ? -0.2 : 0));
  const base = await policy.weightedNllGrad(policy.initialWeights(), batch, tw);
  const probes: [string, number][] = [
    ["tok_embedding", 3 * cfg.dModel + 2],
    ["layers.0.attn.wk", 3],
    ["layers.0.attn.wq", 7],
    ["layers.0.attn.wk", 19],
    ["layers.1.attn.wv", 33],
    ["layers.1.attn.wo", 2],
    ["layers.0.attn_norm", 3],
    ["layers.1.ffn.w_up", 40],
    ["layers.1.ffn.w_down", 11],
    ["final_norm", 5],
    ["lm_head", 17],
  ];
  const eps = 1e-2;
  for (const [name, idx] of probes) {
    const plus: WeightTensors = policy.initialWeights();
    const minus: WeightTensors = policy.initialWeights();
    plus[name]!.data[idx]! += eps;
    minus[name]!.data[idx]! -= eps;
    const fd = ((await policy.weightedNllGrad(plus, batch, tw)).loss - (await policy.weightedNllGrad(minus, batch, tw)).loss) / (2 * eps);
    const g = base.grads[name]!.data[idx]!;
    assert.ok(Math.abs(fd - g) < 2e-3 + 2e-2 * Math.abs(fd), `${name}[${idx}]: finite difference ${fd} vs gradient ${g}`);
  }
  assert.ok(
    Object.values(base.grads).some((g) => g.data.some((x) => Math.abs(x) > 1e-3)),
    "gradients are not all zero",
  );
});

test("tied embeddings: no lm_head tensor, onnxruntime = jax-js, and the gradient of the shared table sums both uses", async () => {
  await initJax();
  const tied = { ...cfg, tiedEmbeddings: true };
  const bytes = modelBytes(tied);
  const policy = JaxPolicy.fromModelBytes(bytes, { nLayers: cfg.nLayers, vocabSize: cfg.vocabSize });
  const w0 = policy.initialWeights();
  assert.ok(!("lm_head" in w0) && "tok_embedding" in w0);
  const expected = await ortLogits(bytes);
  const got = await policy.logits(w0, batch);
  const scale = Math.max(...expected.map(Math.abs));
  assert.ok(maxAbsDiff(got, expected) < 1e-4 * scale, `max abs diff ${maxAbsDiff(got, expected)}`);
  const tw = Float32Array.from({ length: B * T }, (_, i) => (i % 3 === 0 ? 0.3 : 0));
  const base = await policy.weightedNllGrad(w0, batch, tw);
  const eps = 1e-2;
  // Row 1 is a target id (head use) and, at some positions, an input id (embedding use).
  for (const idx of [1 * cfg.dModel + 3, 3 * cfg.dModel + 2, 4 * cfg.dModel + 9]) {
    const plus = policy.initialWeights();
    const minus = policy.initialWeights();
    plus["tok_embedding"]!.data[idx]! += eps;
    minus["tok_embedding"]!.data[idx]! -= eps;
    const fd = ((await policy.weightedNllGrad(plus, batch, tw)).loss - (await policy.weightedNllGrad(minus, batch, tw)).loss) / (2 * eps);
    const g = base.grads["tok_embedding"]!.data[idx]!;
    assert.ok(Math.abs(fd - g) < 2e-3 + 2e-2 * Math.abs(fd), `tok_embedding[${idx}]: finite difference ${fd} vs gradient ${g}`);
  }
});

test("a generic jax-js loss gives the same value and gradient as the built-in weighted NLL", async () => {
  const { policy } = await setup();
  const w = policy.initialWeights();
  const tw = Float32Array.from({ length: B * T }, (_, i) => (i % 2) * 0.25);
  const builtin = await policy.weightedNllGrad(w, batch, tw);
  const generic = await policy.lossAndGrad(w, batch, (lp, ex) => lp.mul(ex["w"]!).sum().mul(-1), { w: tw });
  assert.ok(Math.abs(builtin.loss - generic.loss) < 1e-5);
  for (const name of policy.weightNames) assert.ok(maxAbsDiff(builtin.grads[name]!.data, generic.grads[name]!.data) < 1e-5, name);
  assert.ok(maxAbsDiff(builtin.logProbs, generic.logProbs) < 1e-6);
});

test("a gradient step on the weighted NLL raises the log-probs it weights", async () => {
  const { policy } = await setup();
  const w = policy.initialWeights();
  const tw = Float32Array.from({ length: B * T }, (_, i) => (i < T ? 1 / T : 0));
  const before = await policy.weightedNllGrad(w, batch, tw);
  for (const name of policy.weightNames) {
    const p = w[name]!.data;
    const g = before.grads[name]!.data;
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - 1e-3 * g[i]!;
  }
  const after = await policy.weightedNllGrad(w, batch, tw);
  assert.ok(after.loss < before.loss, `loss ${before.loss} -> ${after.loss}`);
});

test("inputs of the wrong size are rejected with the field name", async () => {
  const { policy } = await setup();
  await assert.rejects(
    policy.weightedNllGrad(policy.initialWeights(), batch, new Float32Array(3)),
    /tokenWeights has 3 values, expected 2×7/,
  );
  const w = policy.initialWeights();
  delete w["lm_head"];
  await assert.rejects(policy.tokenLogProbs(w, batch), /missing weight lm_head/);
});
