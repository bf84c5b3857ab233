import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { DEFAULT_MODEL_DIR } from "../../repo-paths.js";
import { HfImportError } from "./hf-import-error.js";
import { importHfCheckpoint } from "./import-hf.js";
import { encodeSafetensors, floatToBf16, floatToHalf, halfToFloat, readSafetensorsHeader, readSafetensorsTensor } from "./safetensors.js";
import { writeHfFixture } from "./testing/hf-fixture.js";
import type { HfFixtureOptions } from "./testing/hf-fixture.js";

const root = await mkdtemp(join(tmpdir(), "rlmesh-hf-import-"));
after(() => rm(root, { recursive: true, force: true }));
let n = 0;

type Json = Record<string, unknown>;
async function editJson(path: string, edit: (j: Json) => void): Promise<void> {
  const j = JSON.parse(await readFile(path, "utf8")) as Json;
  edit(j);
  await writeFile(path, JSON.stringify(j));
}

/**
 * Writes a fixture, breaks it, imports it: the import must throw HfImportError matching `message`,
 * and leave nothing behind — no --out directory, no temp sibling.
 */
async function refused(opts: Partial<HfFixtureOptions>, breakIt: (dir: string) => Promise<void>, message: RegExp): Promise<void> {
  const parent = join(root, `case-${++n}`);
  const src = join(parent, "src");
  await writeHfFixture({ modelType: "Dream", ...opts, dir: src });
  await breakIt(src);
  const out = join(parent, "out");
  await assert.rejects(importHfCheckpoint(src, { out }), (err: unknown) => {
    assert.ok(err instanceof HfImportError, `expected HfImportError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
  assert.deepEqual((await readdir(parent)).sort(), ["src"], "nothing half-written next to the source");
}

test("refused: a tensor with the wrong shape names the file, the tensor and both shapes", async () => {
  await refused(
    {},
    async (dir) => {
      const h = await readSafetensorsHeader(join(dir, "model.safetensors"));
      const entries = await Promise.all(
        [...h.tensors.values()].map(async (t) => ({
          name: t.name,
          shape: t.name === "model.layers.1.self_attn.k_proj.weight" ? [t.shape[1]!, t.shape[0]!] : t.shape,
          data: await readSafetensorsTensor(t),
        })),
      );
      await writeFile(join(dir, "model.safetensors"), encodeSafetensors(entries));
    },
    /^model\.safetensors: tensor "model\.layers\.1\.self_attn\.k_proj\.weight" has shape \[32, 16\], config\.json implies \[16, 32\]$/,
  );
});

test("refused: a missing tensor is named, with the shard index as the place it should be", async () => {
  await refused(
    { sharded: true },
    async (dir) => {
      await editJson(
        join(dir, "model.safetensors.index.json"),
        (j) => delete (j["weight_map"] as Json)["model.layers.0.mlp.up_proj.weight"],
      );
    },
    /^model\.safetensors\.index\.json: tensor "model\.layers\.0\.mlp\.up_proj\.weight" is missing/,
  );
});

test("refused: an unknown model_type names the key and the supported ones", async () => {
  await refused(
    {},
    (dir) => editJson(join(dir, "config.json"), (j) => (j["model_type"] = "qwen3")),
    /^config\.json: model_type "qwen3" is not supported \(supported: Dream, llada\)$/,
  );
});

test("refused: a tokenizer whose ids do not fit the config's vocab_size", async () => {
  await refused(
    {},
    (dir) => editJson(join(dir, "config.json"), (j) => (j["vocab_size"] = 400)),
    /^tokenizer\.json: has ids up to 564, but config\.json vocab_size is 400/,
  );
  await refused(
    { modelType: "llada" },
    (dir) => editJson(join(dir, "config.json"), (j) => Object.assign(j, { vocab_size: 500, embedding_size: 512 })),
    /^tokenizer\.json: has ids up to 564, but config\.json embedding_size is 512/,
  );
});

test("refused: a missing config key is named", async () => {
  await refused({}, (dir) => editJson(join(dir, "config.json"), (j) => delete j["rope_theta"]), /^config\.json: rope_theta is missing/);
  await refused(
    { modelType: "llada" },
    (dir) => editJson(join(dir, "config.json"), (j) => delete j["n_layers"]),
    /^config\.json: n_layers is missing/,
  );
});

test("refused: special ids that contradict each other across the checkpoint's files", async () => {
  await refused(
    {},
    (dir) => editJson(join(dir, "generation_config.json"), (j) => (j["mask_token_id"] = 7)),
    /^generation_config\.json: mask_token_id = 7 contradicts config\.json mask_token_id = 0 \(state the mask id with --mask-id to choose\)$/,
  );
  await refused(
    {},
    (dir) => editJson(join(dir, "tokenizer_config.json"), (j) => (j["eos_token"] = "<|bos|>")),
    /^tokenizer_config\.json: eos_token "<\|bos\|>" = 3 contradicts config\.json eos_token_id = 2 \(state the eos id with --eos-id to choose\)$/,
  );
  await refused(
    {},
    async (dir) => {
      await editJson(join(dir, "config.json"), (j) => (j["pad_token_id"] = 0));
      await editJson(join(dir, "generation_config.json"), (j) => (j["pad_token_id"] = 0));
      await editJson(join(dir, "tokenizer_config.json"), (j) => (j["pad_token"] = "<|mask|>"));
    },
    /^config\.json: mask id 0 equals the pad id \(config\.json pad_token_id\): a diffusion model needs a distinct mask$/,
  );
});

test("an id the user states (--eos-id) settles a contradiction between the files, and is recorded as such", async () => {
  const src = join(root, "stated-src");
  await writeHfFixture({ modelType: "Dream", dir: src });
  await editJson(join(src, "tokenizer_config.json"), (j) => (j["eos_token"] = "<|bos|>"));
  const r = await importHfCheckpoint(src, { out: join(root, "stated-out"), specialIds: { eos: 3 } });
  assert.equal(r.model.manifest.eos_id, 3);
  assert.equal(r.model.manifest.special_tokens?.eos, "<|bos|>");
  assert.deepEqual((r.model.manifest.source?.["special_id_sources"] as Record<string, string>)["eos"], "command line --eos-id");
  await assert.rejects(
    importHfCheckpoint(src, { out: join(root, "stated-out2"), specialIds: { eos: 100000 } }),
    /^HfImportError: --eos-id 100000: must be an integer in \[0, 592\)/,
  );
});

test("refused: a special id found nowhere is never guessed", async () => {
  await refused(
    {},
    async (dir) => {
      await editJson(join(dir, "config.json"), (j) => delete j["mask_token_id"]);
      await editJson(join(dir, "generation_config.json"), (j) => delete j["mask_token_id"]);
      await editJson(join(dir, "tokenizer_config.json"), (j) => delete j["mask_token"]);
    },
    /^config\.json: mask_token_id is missing \(and no mask_token_id in generation_config\.json, no mask_token in tokenizer_config\.json\)/,
  );
  await refused(
    {},
    (dir) => editJson(join(dir, "tokenizer_config.json"), (j) => (j["mask_token"] = "<|MASK|>")),
    /^tokenizer_config\.json: mask_token "<\|MASK\|>" is not a token of tokenizer\.json$/,
  );
});

test("refused: a bad safetensors header (length past the end, invalid JSON, wrong byte count, truncated data)", async () => {
  await refused(
    {},
    async (dir) => {
      const b = new Uint8Array(await readFile(join(dir, "model.safetensors")));
      new DataView(b.buffer).setBigUint64(0, 1n << 40n, true);
      await writeFile(join(dir, "model.safetensors"), b);
    },
    /^model\.safetensors: safetensors header: header length 1099511627776 does not fit/,
  );
  await refused(
    {},
    async (dir) => {
      const b = new Uint8Array(await readFile(join(dir, "model.safetensors")));
      b[8] = "[".charCodeAt(0) + 1;
      await writeFile(join(dir, "model.safetensors"), b);
    },
    /^model\.safetensors: safetensors header: invalid JSON/,
  );
  await refused(
    {},
    async (dir) => {
      const path = join(dir, "model.safetensors");
      const b = Buffer.from(await readFile(path));
      const len = Number(b.readBigUInt64LE(0));
      const header = b
        .subarray(8, 8 + len)
        .toString("utf8")
        .replace('"dtype":"F32"', '"dtype":"F16"');
      await writeFile(path, Buffer.concat([b.subarray(0, 8 + len - header.length), Buffer.from(header), b.subarray(8 + len)]));
    },
    /^model\.safetensors: safetensors header: tensor "model\.embed_tokens\.weight" data_offsets \[0, \d+\] hold \d+ bytes, F16\[\d+,32\] needs \d+$/,
  );
  await refused(
    {},
    (dir) => truncate(join(dir, "model.safetensors"), 20_000),
    /^model\.safetensors: safetensors header: tensor ".*" data_offsets end \d+ is past the end of the data .*truncated file\?$/,
  );
});

test("refused: a shard index that names a missing file", async () => {
  await refused(
    { sharded: true },
    (dir) => rm(join(dir, "model-00002-of-00002.safetensors")),
    /^model\.safetensors\.index\.json: weight_map\["[^"]+"\] names model-00002-of-00002\.safetensors, which does not exist$/,
  );
});

test("refused: options the family's code has but the importer does not build, and tensors it would drop", async () => {
  await refused(
    {},
    (dir) => editJson(join(dir, "config.json"), (j) => (j["rope_scaling"] = { type: "linear", factor: 2 })),
    /^config\.json: rope_scaling \{"type":"linear","factor":2\} is not supported \(RoPE scaling/,
  );
  await refused(
    { modelType: "llada" },
    (dir) => editJson(join(dir, "config.json"), (j) => (j["scale_logits"] = true)),
    /^config\.json: scale_logits true is not supported/,
  );
  await refused(
    {},
    async (dir) => {
      const h = await readSafetensorsHeader(join(dir, "model.safetensors"));
      const entries = await Promise.all(
        [...h.tensors.values()].map(async (t) => ({ name: t.name, shape: t.shape, data: await readSafetensorsTensor(t) })),
      );
      entries.push({ name: "model.layers.0.self_attn.q_norm.weight", shape: [8], data: new Float32Array(8) });
      await writeFile(join(dir, "model.safetensors"), encodeSafetensors(entries));
    },
    /^model\.safetensors: tensor "model\.layers\.0\.self_attn\.q_norm\.weight" is not part of a Dream checkpoint as config\.json describes it/,
  );
  await refused({}, (dir) => rm(join(dir, "config.json")), /^config\.json: cannot read .*ENOENT/);
  await refused({}, (dir) => rm(join(dir, "model.safetensors")), /^model\.safetensors: not found, and no model\.safetensors\.index\.json/);
});

test("an --out that exists and is not empty is refused and left as it was; an empty one is filled", async () => {
  const src = join(root, "ok-src");
  await writeHfFixture({ modelType: "Dream", dir: src });
  const out = join(root, "busy-out");
  await mkdir(out);
  await writeFile(join(out, "keep.txt"), "mine");
  await assert.rejects(importHfCheckpoint(src, { out }), /--out .*busy-out: exists and is not empty/);
  assert.deepEqual(await readdir(out), ["keep.txt"]);
  const empty = join(root, "empty-out");
  await mkdir(empty);
  const r = await importHfCheckpoint(src, { out: empty, name: "tiny-dream" });
  assert.equal(r.model.manifest.name, "tiny-dream");
  assert.deepEqual((await readdir(empty)).sort(), ["manifest.json", "model.onnx", "tokenizer.json"]);
  assert.equal(r.model.manifest.source?.["model_type"], "Dream");
});

test("a tied Dream checkpoint that still carries lm_head.weight imports (the copy is not needed); an untied one without it is refused", async () => {
  const src = join(root, "tied-with-head");
  await writeHfFixture({ modelType: "Dream", dir: src, tied: true });
  const h = await readSafetensorsHeader(join(src, "model.safetensors"));
  const entries = await Promise.all(
    [...h.tensors.values()].map(async (t) => ({ name: t.name, shape: t.shape, data: await readSafetensorsTensor(t) })),
  );
  const emb = entries.find((e) => e.name === "model.embed_tokens.weight")!;
  entries.push({ name: "lm_head.weight", shape: emb.shape, data: emb.data });
  await writeFile(join(src, "model.safetensors"), encodeSafetensors(entries));
  const r = await importHfCheckpoint(src, { out: join(root, "tied-with-head-out") });
  assert.equal(r.model.manifest.tied_embeddings, true);
  await refused(
    {},
    (dir) =>
      editJson(join(dir, "config.json"), (j) => (j["tie_word_embeddings"] = false)).then(async () => {
        const hh = await readSafetensorsHeader(join(dir, "model.safetensors"));
        const kept = await Promise.all(
          [...hh.tensors.values()]
            .filter((t) => t.name !== "lm_head.weight")
            .map(async (t) => ({ name: t.name, shape: t.shape, data: await readSafetensorsTensor(t) })),
        );
        await writeFile(join(dir, "model.safetensors"), encodeSafetensors(kept));
      }),
    /^model\.safetensors: tensor "lm_head\.weight" is missing/,
  );
});

test("the project's own format (manifest.json, no config.json) is checked and copied; a broken one is refused naming the field", async () => {
  const out = join(root, "own-format-out");
  const r = await importHfCheckpoint(DEFAULT_MODEL_DIR, { out, name: "tiny-copy" });
  assert.equal(r.modelType, "rlmesh");
  assert.equal(r.model.manifest.name, "tiny-copy");
  assert.deepEqual(
    new Uint8Array(await readFile(join(out, "model.onnx"))),
    new Uint8Array(await readFile(join(DEFAULT_MODEL_DIR, "model.onnx"))),
  );
  const broken = join(root, "own-format-broken");
  await mkdir(broken);
  for (const f of ["model.onnx", "tokenizer.json"]) await writeFile(join(broken, f), await readFile(join(DEFAULT_MODEL_DIR, f)));
  await writeFile(
    join(broken, "manifest.json"),
    (await readFile(join(DEFAULT_MODEL_DIR, "manifest.json"), "utf8")).replace(/"vocab_size": \d+/, '"vocab_size": 999'),
  );
  await assert.rejects(
    importHfCheckpoint(broken, { out: join(root, "own-format-broken-out") }),
    /^HfImportError: model\.onnx: output "logits" dim 2 is \d+, manifest says 999/,
  );
  assert.equal(await readdir(join(root, "own-format-broken-out")).catch(() => null), null);
});

test("F16 and BF16 conversions round to nearest and decode exactly", () => {
  for (const v of [0, 1, -2.5, 0.1, 65504, 6.1e-5, 1e-7, -3.14159]) {
    const h = halfToFloat(floatToHalf(v));
    assert.ok(Math.abs(h - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25, `f16 ${v} → ${h}`);
    const b = new Float32Array(new Uint32Array([floatToBf16(v) << 16]).buffer)[0]!;
    assert.ok(Math.abs(b - v) <= Math.abs(v) * 2 ** -8, `bf16 ${v} → ${b}`);
  }
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00, "a tie rounds to even");
  assert.equal(halfToFloat(0x7c00), Infinity);
});

test("--dtype float16: half the weight bytes, manifest weight_dtype float16; a weight outside float16's range is refused naming the file, tensor and value (float32 takes it)", async () => {
  const parent = join(root, `case-${++n}`);
  const src = join(parent, "src");
  await writeHfFixture({ modelType: "Dream", dir: src, seed: 5 });
  const f32 = await importHfCheckpoint(src, { out: join(parent, "f32") });
  const f16 = await importHfCheckpoint(src, { out: join(parent, "f16"), dtype: "float16" });
  assert.equal(f16.weightBytes * 2, f32.weightBytes);
  assert.equal(f16.model.manifest.weight_dtype, "float16");
  assert.equal(f32.model.manifest.weight_dtype, undefined, "float32 stays the default (absent)");
  assert.deepEqual(f16.model.manifest.source?.["checkpoint_dtypes"], ["F32"]);
  const size = async (d: string) => (await readFile(join(parent, d, "model.onnx"))).byteLength;
  assert.ok((await size("f16")) < 0.55 * (await size("f32")), "model.onnx about halves");

  // One value past float16's range (|x| > 65504) in a layer weight.
  const path = join(src, "model.safetensors");
  const h = await readSafetensorsHeader(path);
  const entries = await Promise.all(
    [...h.tensors.values()].map(async (t) => {
      const data = await readSafetensorsTensor(t);
      if (t.name === "model.layers.1.mlp.up_proj.weight") data[3] = 1e5;
      return { name: t.name, shape: t.shape, data };
    }),
  );
  await writeFile(path, encodeSafetensors(entries));
  await assert.rejects(importHfCheckpoint(src, { out: join(parent, "big16"), dtype: "float16" }), (err: unknown) => {
    assert.ok(err instanceof HfImportError, String(err));
    assert.match(
      err.message,
      /^model\.safetensors: tensor "model\.layers\.1\.mlp\.up_proj\.weight" holds 100000 \(rlmesh layout, flat index \d+\), outside float16's range ±65504: --dtype float16 cannot store it \(use --dtype float32\)$/,
    );
    return true;
  });
  assert.ok(!(await readdir(parent)).some((f) => f.includes("big16")), "nothing half-written");
  await importHfCheckpoint(src, { out: join(parent, "big32") });
});
