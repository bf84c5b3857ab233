/**
 * The learner on an imported family's graph (Dream's block shape at test size: grouped-query
 * attention, q/k/v bias, SwiGLU, rope_theta, a vocabulary-sized `Gather` embedding, untied head)
 * and with shifted logits (Dream's convention: position t's distribution is logit row t − 1):
 * jax-js evaluates the same numbers as onnxruntime, shifted log-probs are read from the row
 * before, and their gradients (the embedding's by gather + scatter-add) match finite differences.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import ort from "onnxruntime-node";

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildPolicyGraph, importHfCheckpoint, initWeights, serializeModel } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { float16ToFloat32, float32ToFloat16 } from "@rlmesh/shared/model/float16";
import type { PolicyModelConfig } from "@rlmesh/shared/model/index";

import { JaxPolicy, toPositionSpace, toRowSpace, type JaxPolicyMode, type TokenBatch, type WeightTensors } from "./jax-policy.js";
import { initJax, numpy as np } from "./jax-runtime.js";
import type { Array as JaxArray } from "@jax-js/jax";

const DREAM_LIKE: PolicyModelConfig = {
  vocabSize: 29,
  dModel: 16,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  ffDim: 24,
  maxSeqLen: 16,
  normEps: 1e-6,
  qkvBias: true,
  mlp: "swiglu",
  ropeTheta: 1_000_000,
  embedding: "gather",
};
const cfg = DREAM_LIKE;
const B = 2;
const T = 7;

function modelBytes(config: PolicyModelConfig = cfg, scale = 6): Uint8Array {
  const w = initWeights(config, 11);
  for (const [name, data] of w) {
    if (name.endsWith("norm")) continue;
    // Biases start at zero: give them values so a wrong bias path changes the logits.
    if (/\.b[qkv]$/.test(name)) for (let i = 0; i < data.length; i++) data[i] = Math.sin(3 * i + name.length) * 0.5;
    else for (let i = 0; i < data.length; i++) data[i] = data[i]! * scale;
  }
  return serializeModel(buildPolicyGraph(config, w));
}

const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 3) % cfg.vocabSize);
// Row 1 has two padding keys at the end.
const mask = Float32Array.from({ length: B * T }, (_, i) => (i >= T && i % T >= 5 ? 0 : 1));
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 3 + 1) % cfg.vocabSize);
// Read positions: never position 0 (a shifted model has no row for it), never padding.
const readMask = Uint8Array.from({ length: B * T }, (_, i) => (i % T !== 0 && mask[i] === 1 && i % 2 === 1 ? 1 : 0));
const batch: TokenBatch = {
  batchSize: B,
  seqLen: T,
  inputIds: ids,
  positionIds: Int32Array.from({ length: B * T }, (_, i) => i % T),
  attentionMask: mask,
  targets,
};

async function ortLogits(bytes: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const kvHeads = cfg.nKvHeads ?? cfg.nHeads;
  const empty = new ort.Tensor("float32", new Float32Array(0), [B, kvHeads, 0, cfg.dModel / cfg.nHeads]);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [B, T]),
    position_ids: new ort.Tensor("int64", BigInt64Array.from(batch.positionIds, BigInt), [B, T]),
    attention_mask: new ort.Tensor("float32", mask, [B, T]),
  };
  for (let i = 0; i < cfg.nLayers; i++) feeds[`past_key_${i}`] = feeds[`past_value_${i}`] = empty;
  return (await session.run(feeds))["logits"]!.data as Float32Array;
}

function logSoftmaxAt(logits: Float32Array, row: number, token: number, V = cfg.vocabSize): number {
  const r = logits.subarray(row * V, (row + 1) * V);
  const max = Math.max(...r);
  return r[token]! - (max + Math.log(r.reduce((s, x) => s + Math.exp(x - max), 0)));
}

function policy(bytes: Uint8Array, mode: JaxPolicyMode, shiftedLogits: boolean): JaxPolicy {
  return JaxPolicy.fromModelBytes(bytes, { nLayers: cfg.nLayers, vocabSize: cfg.vocabSize, mode, shiftedLogits });
}

/** −Σ w · log p: a loss of the per-position log-probs with one extra (the GRPO loss has the same form). */
const weightedLoss = (lp: JaxArray, ex: Record<string, JaxArray>): JaxArray => np.where(ex["w"]!.ref.notEqual(0), lp, 0).mul(ex["w"]!).sum().mul(-1);
const tokenW = Float32Array.from(readMask, (m, i) => (m ? 0.2 + 0.1 * (i % 4) : 0));

test("Dream-shaped graph (GQA, qkv bias, SwiGLU, rope_theta, Gather embedding): jax-js logits = onnxruntime logits", async () => {
  await initJax();
  const bytes = modelBytes();
  const p = policy(bytes, "whole-graph", false);
  const expected = await ortLogits(bytes);
  const got = await p.logits(p.initialWeights(), batch);
  const scale = Math.max(...expected.map(Math.abs));
  assert.ok(scale > 1, "logits are not trivially small");
  let diff = 0;
  for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i]! - expected[i]!));
  assert.ok(diff < 1e-4 * scale, `max |Δlogit| ${diff} (scale ${scale})`);
  assert.equal(policy(bytes, "split", false).mode, "split", "the Gather embedding is split out (gradient by scatter-add)");
  p.dispose();
});

for (const mode of ["split", "whole-graph"] as const) {
  test(`shifted logits (${mode}): position t's log-prob is log-softmax of onnxruntime's row t − 1; position 0 reports 0`, async () => {
    await initJax();
    const bytes = modelBytes();
    const logits = await ortLogits(bytes);
    const p = policy(bytes, mode, true);
    const lp = await p.tokenLogProbs(p.initialWeights(), { ...batch, readMask });
    for (let b = 0; b < B; b++) {
      assert.equal(lp[b * T], 0);
      for (let t = 1; t < T; t++) {
        const k = b * T + t;
        if (mode === "split" && !readMask[k]) continue;
        const want = logSoftmaxAt(logits, k - 1, targets[k]!);
        assert.ok(Math.abs(lp[k]! - want) < 1e-4 * Math.max(1, Math.abs(want)), `b${b} t${t}: ${lp[k]} vs ${want}`);
        // And it is not the unshifted value (the test would pass by accident otherwise).
        if (t === 3) assert.ok(Math.abs(lp[k]! - logSoftmaxAt(logits, k, targets[k]!)) > 1e-3);
      }
    }
    p.dispose();
  });
}

test("shifted logits: the loss gradient matches central finite differences, the embedding's (gather) included", async () => {
  await initJax();
  const bytes = modelBytes();
  const p = policy(bytes, "split", true);
  const b1 = { ...batch, readMask };
  const base = await p.lossAndGrad(p.initialWeights(), b1, weightedLoss, { w: tokenW });
  // The loss is −Σ w·lp of the reported log-probs.
  let sum = 0;
  for (let i = 0; i < tokenW.length; i++) sum -= tokenW[i]! * base.logProbs[i]!;
  assert.ok(Math.abs(sum - base.loss) < 1e-4 * Math.max(1, Math.abs(sum)), `${sum} vs ${base.loss}`);
  const d = cfg.dModel;
  const probes: [string, number][] = [
    ["tok_embedding", ids[3]! * d + 2], // an input token's row: the gather's scatter-add
    ["tok_embedding", ids[9]! * d + 5],
    ["layers.0.attn.wq", 7],
    ["layers.0.attn.wk", 3], // [d, kvDim]: GQA
    ["layers.1.attn.bq", 4],
    ["layers.0.attn.bk", 1],
    ["layers.1.attn.bv", 6],
    ["layers.0.ffn.w_gate", 40],
    ["layers.1.ffn.w_up", 11],
    ["layers.1.ffn.w_down", 9],
    ["final_norm", 5],
    ["lm_head", 17],
  ];
  const eps = 1e-2;
  let nonZero = 0;
  for (const [name, idx] of probes) {
    const plus: WeightTensors = p.initialWeights();
    const minus: WeightTensors = p.initialWeights();
    assert.ok(plus[name], `weight ${name} exists`);
    plus[name].data[idx]! += eps;
    minus[name]!.data[idx]! -= eps;
    const lPlus = (await p.lossAndGrad(plus, b1, weightedLoss, { w: tokenW })).loss;
    const lMinus = (await p.lossAndGrad(minus, b1, weightedLoss, { w: tokenW })).loss;
    const fd = (lPlus - lMinus) / (2 * eps);
    const g = base.grads[name]!.data[idx]!;
    if (Math.abs(g) > 1e-3) nonZero++;
    assert.ok(Math.abs(fd - g) < 3e-3 + 3e-2 * Math.abs(fd), `${name}[${idx}]: finite difference ${fd} vs gradient ${g}`);
  }
  assert.ok(nonZero >= 8, `most probes have a real gradient (${nonZero})`);
  p.dispose();
});

test("shifted logits: split and whole-graph give the same loss and gradients", async () => {
  await initJax();
  const bytes = modelBytes();
  const split = policy(bytes, "split", true);
  const whole = policy(bytes, "whole-graph", true);
  const w = split.initialWeights();
  const a = await split.lossAndGrad(w, { ...batch, readMask }, weightedLoss, { w: tokenW });
  const b = await whole.lossAndGrad(w, { ...batch, readMask }, weightedLoss, { w: tokenW });
  assert.ok(Math.abs(a.loss - b.loss) < 1e-4 * Math.abs(a.loss), `${a.loss} vs ${b.loss}`);
  for (const name of split.weightNames) {
    const ga = a.grads[name]!.data;
    const gb = b.grads[name]!.data;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < ga.length; i++) {
      scale = Math.max(scale, Math.abs(gb[i]!));
      diff = Math.max(diff, Math.abs(ga[i]! - gb[i]!));
    }
    assert.ok(diff <= 1e-4 * Math.max(scale, 1e-3), `${name}: max |Δgrad| ${diff} (scale ${scale})`);
  }
  split.dispose();
  whole.dispose();
});

test("shifted logits: reading position 0 is refused with a reason; the row-space move is its own inverse on read positions", async () => {
  await initJax();
  const p = policy(modelBytes(), "split", true);
  const bad = Uint8Array.from(readMask);
  bad[T] = 1;
  await assert.rejects(p.tokenLogProbs(p.initialWeights(), { ...batch, readMask: bad }), /row 1 reads position 0.*shifted-logits/);
  const w = new Float32Array(B * T);
  w[0] = 1;
  await assert.rejects(p.weightedNllGrad(p.initialWeights(), batch, w), /row 0 reads position 0/);
  p.dispose();
  const { batch: rows, extras } = toRowSpace({ ...batch, readMask }, { w: tokenW });
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      assert.equal(rows.targets[b * T + t - 1], targets[b * T + t]);
      assert.equal(rows.readMask![b * T + t - 1], readMask[b * T + t]);
      assert.equal(extras["w"]![b * T + t - 1], tokenW[b * T + t]);
    }
    assert.equal(rows.readMask![b * T + T - 1], 0, "the last row predicts past the sequence: never read");
  }
  const back = toPositionSpace(extras["w"]!, batch);
  assert.deepEqual(Array.from(back), Array.from(tokenW));
});

for (const dtype of ["float32", "float16"] as const) {
test(`an imported Dream checkpoint (HF-layout fixture through import-hf --dtype ${dtype}): jax-js logits = onnxruntime logits, shifted log-probs read row t − 1`, async () => {
  await initJax();
  const root = mkdtempSync(join(tmpdir(), "rlmesh-jax-import-"));
  try {
    const fx = await writeHfFixture({ modelType: "Dream", dir: join(root, "hf"), seed: 6 });
    const { model } = await importHfCheckpoint(fx.dir, { out: join(root, "model"), name: "dream-tiny", dtype });
    const m = model.manifest;
    assert.equal(m.weight_dtype ?? "float32", dtype);
    assert.equal(m.shifted_logits, true);
    const p = JaxPolicy.fromLoadedModel(model, "split");
    assert.equal(p.mode, "split");
    assert.equal(p.shiftedLogits, true);
    const Tn = 9;
    const tokIds = Int32Array.from({ length: 2 * Tn }, (_, i) => (i * 7 + 5) % 500);
    const b: TokenBatch = {
      batchSize: 2,
      seqLen: Tn,
      inputIds: tokIds,
      positionIds: Int32Array.from({ length: 2 * Tn }, (_, i) => i % Tn),
      attentionMask: new Float32Array(2 * Tn).fill(1),
      targets: Int32Array.from({ length: 2 * Tn }, (_, i) => (i * 11 + 3) % 500),
      readMask: Uint8Array.from({ length: 2 * Tn }, (_, i) => (i % Tn === 0 ? 0 : 1)),
    };
    const session = await ort.InferenceSession.create(model.modelBytes, { intraOpNumThreads: 1 });
    const kvH = m.n_kv_heads ?? m.n_heads;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(tokIds, BigInt), [2, Tn]),
      position_ids: new ort.Tensor("int64", BigInt64Array.from(b.positionIds, BigInt), [2, Tn]),
      attention_mask: new ort.Tensor("float32", b.attentionMask, [2, Tn]),
    };
    for (let i = 0; i < m.n_layers; i++) feeds[`past_key_${i}`] = feeds[`past_value_${i}`] = new ort.Tensor("float32", new Float32Array(0), [2, kvH, 0, m.head_dim]);
    const expected = (await session.run(feeds))["logits"]!.data as Float32Array;
    const got = await p.logits(p.initialWeights(), b);
    const scale = Math.max(...expected.map(Math.abs));
    let diff = 0;
    for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i]! - expected[i]!));
    assert.ok(diff < 1e-4 * Math.max(scale, 1), `max |Δlogit| ${diff} (scale ${scale})`);
    const lp = await p.tokenLogProbs(p.initialWeights(), b);
    for (let k = 0; k < 2 * Tn; k++) {
      if (k % Tn === 0) continue;
      const want = logSoftmaxAt(expected, k - 1, b.targets[k]!, m.vocab_size);
      assert.ok(Math.abs(lp[k]! - want) < 1e-4 * Math.max(1, Math.abs(want)), `${k}: ${lp[k]} vs ${want}`);
    }
    if (dtype === "float16") {
      // Trained in float32 from the upcast weights: the initial weights are float32 arrays holding
      // float16 values exactly, and a gradient step moves them off the float16 grid.
      const w = p.initialWeights();
      const wq = w["layers.0.attn.wq"]!.data;
      assert.ok(wq instanceof Float32Array);
      assert.deepEqual(float16ToFloat32(float32ToFloat16(wq)), wq, "float32 holding the float16 values exactly");
      const { grads } = await p.lossAndGrad(w, b, weightedLoss, { w: Float32Array.from(b.readMask!, (r) => r * 0.3) });
      const g = grads["tok_embedding"]!.data;
      assert.ok(g.some((x) => Math.abs(x) > 1e-4), "the embedding gets a gradient");
      assert.ok(grads["layers.0.attn.wq"]!.data.some((x) => Math.abs(x) > 1e-4), "wq gets a gradient");
    }
    p.dispose();
    await session.release();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
}
