import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { buildPolicyGraph, serializeModel } from "./graph-builder.js";
import { initWeights } from "./init-weights.js";
import { headDim, kvHeads } from "./model-config.js";
import type { PolicyModelConfig } from "./model-config.js";
import { configFromManifest, validateManifest } from "./model-manifest.js";
import { modelInputNames, modelOutputNames } from "./model-io-names.js";
import { parseModel, readWeights, replaceWeights } from "./onnx-weights.js";
import { logitRows, maxAbsDiff, ortForward, ortSession, selectPositions, TEST_CONFIG } from "./ort-test-helpers.js";
import type { KvTensor } from "./ort-test-helpers.js";
import { SeededRandom } from "./seeded-random.js";
import { weightLayout } from "./weight-layout.js";

const TOL = 1e-4;

/**
 * One config per model family the builder serves: the tiny model's defaults, a Dream/Qwen2-style
 * block (GQA 4/2, q/k/v bias, SwiGLU, rope θ 1e6, Gather embedding, untied head), a LLaDA-style
 * block (MHA, SwiGLU, θ 5e5, Gather, untied) and an odd one (GQA 4/1, an explicit head_dim ≠
 * d/H, tied head, one-hot embedding).
 */
const FAMILIES: Record<string, PolicyModelConfig> = {
  tiny: TEST_CONFIG,
  dream: { ...TEST_CONFIG, nHeads: 4, nKvHeads: 2, qkvBias: true, mlp: "swiglu", ropeTheta: 1e6, embedding: "gather" },
  llada: { ...TEST_CONFIG, mlp: "swiglu", ropeTheta: 5e5, embedding: "gather" },
  "gqa-explicit-head-dim-tied": { ...TEST_CONFIG, nHeads: 4, nKvHeads: 1, headDim: 6, qkvBias: true, tiedEmbeddings: true },
};

function familyWeights(cfg: PolicyModelConfig, seed: number) {
  const w = initWeights(cfg, seed);
  const rng = new SeededRandom(seed + 1000);
  // Larger than init scale, so attention is far from uniform and mistakes show; biases non-zero.
  for (const [name, data] of w) {
    if (name.endsWith("norm")) continue;
    for (let i = 0; i < data.length; i++) data[i] = /\.attn\.b[qkv]$/.test(name) ? rng.normal() * 0.5 : data[i]! * 25;
  }
  return w;
}

function modelBytesFor(cfg: PolicyModelConfig, seed = 7): Uint8Array {
  return serializeModel(buildPolicyGraph(cfg, familyWeights(cfg, seed)));
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

for (const [family, cfg] of Object.entries(FAMILIES)) {
  const H = kvHeads(cfg);
  const Dh = headDim(cfg);
  const V = cfg.vocabSize;
  const N = 12;
  const ids = Array.from({ length: N }, (_, i) => (i * 11 + 5) % V);
  const positions = Array.from({ length: N }, (_, i) => i);
  const modelBytes = (seed = 7) => modelBytesFor(cfg, seed);

  test(`${family}: ORT runs the full forward with zero-length past and the contract's I/O names and shapes`, async () => {
    const bytes = modelBytes();
    const session = await ortSession(bytes);
    assert.deepEqual([...session.inputNames], modelInputNames(cfg.nLayers, true));
    assert.deepEqual([...session.outputNames], modelOutputNames(cfg.nLayers));
    const out = await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1));
    assert.equal(out.logits.length, N * V);
    assert.equal(out.keys[0]!.data.length, H * N * Dh);
    assert.ok(out.logits.every(Number.isFinite));
  });

  test(`${family}: prefix cache: block + suffix with past K/V of the prefix equals the full forward`, async () => {
    const session = await ortSession(modelBytes());
    const full = await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1));
    const a = 5;
    const keep = range(0, a);
    const past = {
      keys: full.keys.map((k) => selectPositions(k, 1, H, Dh, keep)),
      values: full.values.map((v) => selectPositions(v, 1, H, Dh, keep)),
    };
    const cur = range(a, N);
    const cached = await ortForward(
      session,
      cfg,
      1,
      cur.map((j) => ids[j]!),
      cur,
      new Array(N).fill(1),
      past,
    );
    assert.ok(maxAbsDiff(cached.logits, logitRows(full.logits, N, V, 0, a, N)) < TOL);
    // present K/V are the current tokens' own, so a cache can be assembled from any forward.
    assert.ok(maxAbsDiff(cached.keys[1]!.data, selectPositions(full.keys[1]!, 1, H, Dh, cur).data) < TOL);
  });

  test(`${family}: dual cache: a middle block with past K/V of prefix and suffix equals the full forward`, async () => {
    const session = await ortSession(modelBytes());
    const full = await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1));
    const [a, b] = [4, 8];
    const other = [...range(0, a), ...range(b, N)];
    const past = {
      keys: full.keys.map((k) => selectPositions(k, 1, H, Dh, other)),
      values: full.values.map((v) => selectPositions(v, 1, H, Dh, other)),
    };
    const block = range(a, b);
    const cached = await ortForward(
      session,
      cfg,
      1,
      block.map((j) => ids[j]!),
      block,
      new Array(N).fill(1),
      past,
    );
    assert.ok(maxAbsDiff(cached.logits, logitRows(full.logits, N, V, 0, a, b)) < TOL);
  });

  test(`${family}: a stale cache is not the same as the exact one (the parity checks can fail)`, async () => {
    const session = await ortSession(modelBytes());
    const full = await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1));
    const zero = (k: KvTensor) => ({ data: new Float32Array(k.data.length), seq: 5 });
    const past = {
      keys: full.keys.map((k) => zero(selectPositions(k, 1, H, Dh, range(0, 5)))),
      values: full.values.map((v) => zero(selectPositions(v, 1, H, Dh, range(0, 5)))),
    };
    const cached = await ortForward(
      session,
      cfg,
      1,
      range(5, N).map((j) => ids[j]!),
      range(5, N),
      new Array(N).fill(1),
      past,
    );
    assert.ok(maxAbsDiff(cached.logits, logitRows(full.logits, N, V, 0, 5, N)) > 1e-2);
  });

  test(`${family}: masked padding keys do not change the real positions of a shorter row in a batch`, async () => {
    const session = await ortSession(modelBytes());
    const short = 8;
    const alone = await ortForward(session, cfg, 1, ids.slice(0, short), positions.slice(0, short), new Array(short).fill(1));
    const padded = [...ids.slice(0, short), ...new Array(N - short).fill(3)];
    const batchIds = [...ids, ...padded];
    const batchPos = [...positions, ...positions];
    const mask = [...new Array(N).fill(1), ...new Array(short).fill(1), ...new Array(N - short).fill(0)];
    const both = await ortForward(session, cfg, 2, batchIds, batchPos, mask);
    assert.ok(maxAbsDiff(logitRows(both.logits, N, V, 1, 0, short), alone.logits) < TOL);
    assert.ok(
      maxAbsDiff(logitRows(both.logits, N, V, 0, 0, N), (await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1))).logits) <
        TOL,
    );
  });

  test(`${family}: positions are explicit and relative (RoPE): a uniform shift keeps the logits, a gap changes them`, async () => {
    const session = await ortSession(modelBytes());
    const ones = new Array(N).fill(1);
    const a = await ortForward(session, cfg, 1, ids, positions, ones);
    const shifted = await ortForward(session, cfg, 1, ids, positions.map((p) => p + 3), ones);
    const gapped = await ortForward(session, cfg, 1, ids, positions.map((p) => (p >= 6 ? p + 5 : p)), ones);
    assert.ok(maxAbsDiff(a.logits, shifted.logits) < 1e-3);
    assert.ok(maxAbsDiff(a.logits, gapped.logits) > 1e-2);
  });
}

const cfg = TEST_CONFIG;
const N = 12;
const ids = Array.from({ length: N }, (_, i) => (i * 11 + 5) % cfg.vocabSize);
const positions = Array.from({ length: N }, (_, i) => i);
const modelBytes = (seed = 7) => modelBytesFor(cfg, seed);

test("replaceWeights swaps a version: same output as a model built from those weights", async () => {
  const base = parseModel(modelBytes(7));
  const other = initWeights(cfg, 99);
  const patched = serializeModel(replaceWeights(base, other));
  const rebuilt = serializeModel(buildPolicyGraph(cfg, other));
  const mask = new Array(N).fill(1);
  const x = await ortForward(await ortSession(patched), cfg, 1, ids, positions, mask);
  const y = await ortForward(await ortSession(rebuilt), cfg, 1, ids, positions, mask);
  assert.ok(maxAbsDiff(x.logits, y.logits) < 1e-6);
  assert.throws(() => replaceWeights(base, new Map([["nope", new Float32Array(1)]])), /no weight named nope/);
  assert.throws(() => replaceWeights(base, new Map([["lm_head", new Float32Array(3)]])), /lm_head has 592 values in the model, got 3/);
});

test("buildPolicyGraph rejects a config or weights that do not fit", () => {
  assert.throws(() => buildPolicyGraph({ ...cfg, nHeads: 3 }, initWeights(cfg, 1)), /not divisible by nHeads/);
  const w = initWeights(cfg, 1);
  w.delete("layers.1.attn.wq");
  assert.throws(() => buildPolicyGraph(cfg, w), /missing weight layers\.1\.attn\.wq/);
});

test("the family options change the weight layout as documented (GQA K/V width, biases, gate, no lm_head when tied)", () => {
  const shapes = (c: PolicyModelConfig) => new Map(weightLayout(c).map((s) => [s.name, s.shape.join(",")]));
  const dream = shapes(FAMILIES["dream"]!);
  assert.equal(dream.get("layers.0.attn.wq"), "16,16");
  assert.equal(dream.get("layers.0.attn.wk"), "16,8");
  assert.equal(dream.get("layers.0.attn.bv"), "8");
  assert.equal(dream.get("layers.0.ffn.w_gate"), "16,24");
  assert.equal(dream.get("lm_head"), "16,37");
  const odd = shapes(FAMILIES["gqa-explicit-head-dim-tied"]!);
  assert.equal(odd.get("layers.1.attn.wq"), "16,24");
  assert.equal(odd.get("layers.1.attn.wo"), "24,16");
  assert.equal(odd.get("layers.1.attn.wk"), "16,6");
  assert.equal(odd.has("lm_head"), false);
  assert.equal(odd.has("layers.0.ffn.w_gate"), false);
  const tiny = shapes(TEST_CONFIG);
  assert.equal(tiny.has("layers.0.attn.bq"), false);
  assert.throws(() => buildPolicyGraph({ ...cfg, nHeads: 4, nKvHeads: 3 }, initWeights(cfg, 1)), /nHeads 4 is not divisible by nKvHeads 3/);
});

test("the shipped tiny-coder rebuilt by this builder has the same graph and the same logits", async () => {
  const dir = fileURLToPath(new URL("../../../models/tiny-coder/", import.meta.url));
  const manifest = validateManifest(JSON.parse(await readFile(`${dir}manifest.json`, "utf8")));
  const shippedBytes = new Uint8Array(await readFile(`${dir}model.onnx`));
  const shipped = parseModel(shippedBytes);
  const tinyCfg = configFromManifest(manifest);
  const weights = new Map([...readWeights(shipped, weightLayout(tinyCfg).map((s) => s.name))].map(([k, v]) => [k, v.data]));
  const rebuilt = buildPolicyGraph(tinyCfg, weights);
  const sig = (m: typeof shipped) => m.graph!.node.map((n) => `${n.opType}(${n.input.join(",")})->${n.output.join(",")}`);
  assert.deepEqual(sig(rebuilt), sig(shipped));
  const tokens = Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % tinyCfg.vocabSize);
  const pos = range(0, 20);
  const a = await ortForward(await ortSession(shippedBytes), tinyCfg, 1, tokens, pos, new Array(20).fill(1));
  const b = await ortForward(await ortSession(serializeModel(rebuilt)), tinyCfg, 1, tokens, pos, new Array(20).fill(1));
  assert.equal(maxAbsDiff(a.logits, b.logits), 0);
});
