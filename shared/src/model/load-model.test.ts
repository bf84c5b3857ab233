import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { buildPolicyGraph, serializeModel } from "./graph-builder.js";
import { initWeights } from "./init-weights.js";
import { loadModel } from "./load-model.js";
import { manifestForConfig, ModelLoadError } from "./model-manifest.js";
import { modelBytes, parseModel } from "./onnx-weights.js";
import type { ModelManifest } from "./model-manifest.js";
import { TEST_CONFIG } from "./ort-test-helpers.js";
import { writeModelDir } from "./write-model-dir.js";

const cfg = TEST_CONFIG;
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A tokenizer.json with ids 0..n-1: three special added tokens and plain vocab. */
function tokenizerJson(n: number): unknown {
  const vocab: Record<string, number> = {};
  for (let i = 3; i < n; i++) vocab[`t${i}`] = i;
  return {
    version: "1.0",
    added_tokens: [
      { id: 0, content: "<|mask|>", special: true },
      { id: 1, content: "<|pad|>", special: true },
      { id: 2, content: "<|eos|>", special: true },
    ],
    model: { type: "BPE", vocab, merges: [] },
  };
}

async function modelDir(mutate: { manifest?: (m: ModelManifest) => void; bytes?: Uint8Array; tokenizer?: unknown } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "rlmesh-model-"));
  dirs.push(dir);
  const manifest = manifestForConfig(
    cfg,
    { mask: 0, pad: 1, eos: 2 },
    { special_tokens: { mask: "<|mask|>", pad: "<|pad|>", eos: "<|eos|>" } },
  );
  mutate.manifest?.(manifest);
  await writeModelDir(dir, mutate.bytes ?? serializeModel(buildPolicyGraph(cfg, initWeights(cfg, 1))), manifest);
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(mutate.tokenizer ?? tokenizerJson(cfg.vocabSize)));
  return dir;
}

async function rejects(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(loadModel(dir), (err: unknown) => {
    assert.ok(err instanceof ModelLoadError, `expected ModelLoadError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

test("a consistent model directory loads with its manifest and bytes", async () => {
  const dir = await modelDir();
  const m = await loadModel(dir);
  assert.equal(m.manifest.vocab_size, cfg.vocabSize);
  assert.equal(m.manifest.shifted_logits, false);
  assert.deepEqual(m.manifest.cache_support, ["prefix", "dual"]);
  assert.equal(m.tokenizerVocabSize, cfg.vocabSize);
  assert.deepEqual(m.modelBytes, new Uint8Array(await readFile(join(dir, "model.onnx"))));
});

test("manifest vocab_size that does not match the logits width is named", async () => {
  await rejects(await modelDir({ manifest: (m) => (m.vocab_size = 50) }), /output "logits" dim 2 is 37, manifest says 50/);
});

test("manifest n_layers smaller than the graph's is named", async () => {
  await rejects(await modelDir({ manifest: (m) => (m.n_layers = 1) }), /has "past_key_1" but manifest n_layers is 1/);
});

test("manifest n_layers larger than the graph's is named", async () => {
  await rejects(await modelDir({ manifest: (m) => (m.n_layers = 3) }), /has no input "past_key_2"/);
});

test("head_dim that contradicts the K/V inputs is named", async () => {
  await rejects(
    await modelDir({
      manifest: (m) => {
        m.n_heads = 4;
        m.head_dim = 4;
      },
    }),
    /input "past_key_0" dim 1 is 2, manifest says 4/,
  );
});

test("an input name the graph does not have is named", async () => {
  await rejects(
    await modelDir({ manifest: (m) => (m.inputs.input_ids = "tokens") }),
    /has no input "tokens" \(manifest inputs\.input_ids\)/,
  );
});

test("missing or ill-typed manifest fields are named", async () => {
  await rejects(
    await modelDir({ manifest: (m) => delete (m as Partial<ModelManifest>).eos_id }),
    /manifest\.json: eos_id must be an integer in \[0, 37\)/,
  );
  await rejects(
    await modelDir({ manifest: (m) => ((m as unknown as Record<string, unknown>)["shifted_logits"] = "no") }),
    /shifted_logits must be a boolean/,
  );
  await rejects(await modelDir({ manifest: (m) => (m.mask_id = m.pad_id) }), /mask_id 1 must differ from pad_id 1/);
  await rejects(
    await modelDir({ manifest: (m) => ((m as unknown as Record<string, unknown>)["tied_embeddings"] = "yes") }),
    /tied_embeddings must be a boolean/,
  );
  await rejects(
    await modelDir({ manifest: (m) => (m.decoding = { response_budget: 64, lookahead: 0 }) }),
    /decoding\.lookahead must be a positive integer, got 0/,
  );
  await rejects(await modelDir({ manifest: (m) => (m.files.model = "../x.onnx") }), /files\.model must be a plain file name/);
  await rejects(await modelDir({ manifest: (m) => delete m.inputs.past_key }), /inputs\.past_key is required when cache_support/);
});

test("a manifest that is not JSON, and a missing manifest, are named", async () => {
  const dir = await modelDir();
  await writeFile(join(dir, "manifest.json"), "{ not json");
  await rejects(dir, /manifest\.json: invalid JSON/);
  await rm(join(dir, "manifest.json"));
  await rejects(dir, /manifest\.json: cannot read .*ENOENT/);
});

test("a corrupt ONNX file is named", async () => {
  await rejects(await modelDir({ bytes: new Uint8Array([1, 2, 3, 255, 255, 255]) }), /model\.onnx: not a valid ONNX model/);
});

test("a model whose weights do not match the manifest's config is named", async () => {
  const bigger = { ...cfg, ffDim: cfg.ffDim * 2 };
  await rejects(
    await modelDir({ bytes: serializeModel(buildPolicyGraph(bigger, initWeights(bigger, 1))) }),
    /weight "layers\.0\.ffn\.w_up" is \[16,48\], manifest implies \[16,24\]/,
  );
});

test("a tied-embedding model loads with a manifest that says so, and is refused by one that does not", async () => {
  const tied = { ...cfg, tiedEmbeddings: true };
  const bytes = serializeModel(buildPolicyGraph(tied, initWeights(tied, 1)));
  const ok = await loadModel(await modelDir({ bytes, manifest: (m) => (m.tied_embeddings = true) }));
  assert.equal(ok.manifest.tied_embeddings, true);
  await rejects(await modelDir({ bytes }), /lm_head/);
});

test("a tokenizer with more ids than vocab_size is named", async () => {
  await rejects(
    await modelDir({ tokenizer: tokenizerJson(cfg.vocabSize + 5) }),
    /tokenizer produces ids up to 41 but manifest vocab_size is 37/,
  );
});

test("special ids that disagree with the tokenizer are named", async () => {
  await rejects(await modelDir({ manifest: (m) => (m.eos_id = 5) }), /"<\|eos\|>" has id 2, manifest eos_id is 5/);
  await rejects(await modelDir({ manifest: (m) => (m.special_tokens = { mask: "<MASK>" }) }), /has no special token "<MASK>"/);
});

test("a missing tokenizer file is named", async () => {
  const dir = await modelDir();
  await rm(join(dir, "tokenizer.json"));
  await rejects(dir, /tokenizer\.json: cannot read/);
});

test("a Dream-style graph (GQA, q/k/v bias, SwiGLU, Gather, θ 1e6) loads with its manifest fields; a manifest without n_kv_heads is named", async () => {
  const dream = { ...cfg, nHeads: 4, nKvHeads: 2, qkvBias: true, mlp: "swiglu" as const, ropeTheta: 1e6, embedding: "gather" as const };
  const bytes = serializeModel(buildPolicyGraph(dream, initWeights(dream, 1)));
  const manifest = manifestForConfig(dream, { mask: 0, pad: 1, eos: 2 }, { shifted_logits: true });
  assert.equal(manifest.n_kv_heads, 2);
  const ok = await loadModel(await modelDir({ bytes, manifest: (m) => Object.assign(m, manifest) }));
  assert.deepEqual(
    [ok.manifest.n_kv_heads, ok.manifest.qkv_bias, ok.manifest.mlp, ok.manifest.rope_theta, ok.manifest.embedding, ok.manifest.shifted_logits],
    [2, true, "swiglu", 1e6, "gather", true],
  );
  await rejects(
    await modelDir({ bytes, manifest: (m) => Object.assign(m, { ...manifest, n_kv_heads: undefined }) }),
    /input "past_key_0" dim 1 is 2, manifest says 4/,
  );
  await rejects(
    await modelDir({ bytes, manifest: (m) => Object.assign(m, { ...manifest, mlp: "gelu_sigmoid" }) }),
    /model\.onnx: weight "layers\.0\.ffn\.w_gate" is not in the rlmesh-mdlm-v1 layout/,
  );
  await rejects(await modelDir({ bytes, manifest: (m) => Object.assign(m, { ...manifest, n_kv_heads: 3 }) }), /n_heads 4 must be a multiple of n_kv_heads 3/);
  await rejects(await modelDir({ bytes, manifest: (m) => Object.assign(m, { ...manifest, mlp: "relu" }) }), /manifest\.json: mlp must be "gelu_sigmoid" or "swiglu"/);
});

test("weight_dtype float16: a float16 model loads; a weight of the other dtype, a float16 weight read without its Cast, and a bad weight_dtype are refused by name", async () => {
  const half = serializeModel(buildPolicyGraph(cfg, initWeights(cfg, 1), { weightDtype: "float16" }));
  const ok = await loadModel(await modelDir({ manifest: (m) => (m.weight_dtype = "float16"), bytes: half }));
  assert.equal(ok.manifest.weight_dtype, "float16");
  // float16 weights under a manifest that says (by default) float32
  await rejects(await modelDir({ bytes: half }), /^model\.onnx: weight "tok_embedding" is FLOAT16, manifest\.json weight_dtype is float32 \(stored as FLOAT\)$/);
  // float32 weights under a manifest that says float16
  await rejects(
    await modelDir({ manifest: (m) => (m.weight_dtype = "float16") }),
    /^model\.onnx: weight "tok_embedding" is FLOAT, manifest\.json weight_dtype is float16 \(stored as FLOAT16\)$/,
  );
  // a float16 weight fed straight into a MatMul (no Cast to float32)
  const model = parseModel(half);
  const node = model.graph!.node.find((n) => n.input.includes("layers.0.attn.wq.f32"))!;
  node.input = node.input.map((i) => (i === "layers.0.attn.wq.f32" ? "layers.0.attn.wq" : i));
  await rejects(
    await modelDir({ manifest: (m) => (m.weight_dtype = "float16"), bytes: modelBytes(model) }),
    /^model\.onnx: float16 weight "layers\.0\.attn\.wq" is read by MatMul node "layers\.0\.q\.proj"; with weight_dtype float16 each weight is read only through a Cast to float32$/,
  );
  await rejects(
    await modelDir({ manifest: (m) => ((m as unknown as Record<string, unknown>)["weight_dtype"] = "bfloat16") }),
    /^manifest\.json: weight_dtype must be "float32" or "float16", got "bfloat16"$/,
  );
});

test("infill_decoding (variable-length length cuts and length search) loads with expand_id and is refused by name when malformed", async () => {
  const withExpand = (d: unknown) => (m: ModelManifest) => {
    m.expand_id = 5;
    (m as unknown as Record<string, unknown>)["infill_decoding"] = d;
  };
  const ok = await loadModel(await modelDir({ manifest: withExpand({ eos_cut: 0.2, expand_cut: 0.03, length_search: 3 }) }));
  assert.deepEqual(ok.manifest.infill_decoding, { eos_cut: 0.2, expand_cut: 0.03, length_search: 3 });
  await rejects(await modelDir({ manifest: withExpand({ length_search: 2.5 }) }), /infill_decoding\.length_search must be an integer in \[0, 16\], got 2\.5/);
  await rejects(await modelDir({ manifest: withExpand({ length_search: 17 }) }), /infill_decoding\.length_search must be an integer in \[0, 16\], got 17/);
  await rejects(await modelDir({ manifest: withExpand({ eos_cut: 1.5 }) }), /infill_decoding\.eos_cut must be a number in \[0, 1\], got 1\.5/);
  await rejects(await modelDir({ manifest: withExpand({ eos_cutt: 0.2 }) }), /infill_decoding\.eos_cutt must be absent \(known: eos_cut, expand_cut, length_search\)/);
  await rejects(await modelDir({ manifest: withExpand([0.2]) }), /infill_decoding must be an object/);
  await rejects(
    await modelDir({ manifest: (m) => ((m as unknown as Record<string, unknown>)["infill_decoding"] = { eos_cut: 0.2 }) }),
    /infill_decoding must be absent: it needs expand_id/,
  );
});
