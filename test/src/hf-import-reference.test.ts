// Imported Hugging Face checkpoints against an independent PyTorch forward (test/python/
// hf_reference_forward.py, Debian's python3-torch), and the KV-cache contract on the imported graph.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import ort from "onnxruntime-node";
import { configFromManifest, headDim, importHfCheckpoint, kvHeads, loadModel } from "@rlmesh/shared/model/index";
import type { ImportHfResult, PolicyModelConfig } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import type { HfFixture, HfFixtureOptions } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { logitRows, maxAbsDiff, ortForward, selectPositions } from "@rlmesh/shared/model/ort-test-helpers";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const TOL = 1e-4;
const root = await mkdtemp(join(tmpdir(), "rlmesh-hf-ref-"));
after(() => rm(root, { recursive: true, force: true }));

/** A python3 with torch and numpy (RLMESH_PYTHON, python3, /usr/bin/python3); fails loudly when none has them. */
function pythonWithTorch(): string {
  const tried: string[] = [];
  for (const py of [process.env.RLMESH_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c)) {
    try {
      execFileSync(py, ["-c", "import torch, numpy"], { stdio: "pipe" });
      return py;
    } catch (err) {
      tried.push(
        `${py}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message)
          .trim()
          .split("\n")
          .pop()}`,
      );
    }
  }
  throw new Error(
    `no python3 with torch and numpy (tried ${tried.join("; ")}): apt-get install -y python3-torch python3-numpy (scripts/setup.sh does), or set RLMESH_PYTHON`,
  );
}
const python = pythonWithTorch();

/** Reference logits of several (checkpoint, ids) pairs, in one python process (torch's import is most of a run). */
async function referenceLogits(runs: { dir: string; ids: number[] }[]): Promise<Float32Array[]> {
  const outs = runs.map((_, k) => join(root, `ref-${k}.f32`));
  const args = runs.flatMap((r, k) => [r.dir, r.ids.join(","), outs[k]!]);
  await new Promise<void>((resolve, reject) =>
    execFile(python, [join(REPO_ROOT, "test", "python", "hf_reference_forward.py"), ...args], { timeout: 180_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`reference forward failed: ${stderr}`)) : resolve(),
    ),
  );
  return Promise.all(
    outs.map(async (o) => {
      const bytes = await readFile(o);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    }),
  );
}

const CASES: Record<string, Omit<HfFixtureOptions, "dir">> = {
  "Dream (untied head, one model.safetensors, F32)": { modelType: "Dream", seed: 11 },
  "Dream (tied head, sharded index, BF16, DreamOn edit tokens)": {
    modelType: "Dream",
    seed: 12,
    tied: true,
    sharded: true,
    dtype: "BF16",
    editTokens: true,
  },
  "llada (untied ff_out, sharded index, F16)": { modelType: "llada", seed: 13, sharded: true, dtype: "F16" },
  "llada (tied wte, GQA 4/2, q/k/v bias)": {
    modelType: "llada",
    seed: 14,
    tied: true,
    configOverrides: { n_kv_heads: 2, include_qkv_bias: true },
  },
};

/**
 * `import-hf --dtype float16` of these fixtures: float16 weights, float32 compute. Compared with
 * the PyTorch forward on weights rounded to float16 (what the file holds: ≤ TOL, as in float32)
 * and with the checkpoint's own weights (the cost of half precision, bounded by HALF_BOUND).
 */
const FLOAT16_CASES: Record<string, Omit<HfFixtureOptions, "dir">> = {
  "Dream float16 (untied head, F32 checkpoint)": { modelType: "Dream", seed: 31 },
  "llada float16 (tied wte, GQA 4/2, q/k/v bias, BF16 checkpoint)": {
    modelType: "llada",
    seed: 32,
    tied: true,
    dtype: "BF16",
    configOverrides: { n_kv_heads: 2, include_qkv_bias: true },
  },
};

/**
 * Bound on max |Δlogit| between a float16-stored import and the unrounded checkpoint: every
 * weight carries a relative rounding error ≤ 2^-11 (float16's 10-bit mantissa, round to nearest);
 * to first order a logit then moves by at most that much of its size per weight matrix on its
 * path — 7 per layer (q, k, v, o, gate, up, down) plus the head — so |Δ| ≤ 2^-11 · (7L + 1) · max
 * |logit| (errors of independent weights partly cancel, so this is loose, not tight).
 */
const halfBound = (nLayers: number, maxLogit: number) => 2 ** -11 * (7 * nLayers + 1) * maxLogit;

const N = 14;
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

/** Every case's fixture, import and input ids, and the PyTorch logits of all of them from one python run. */
const prepared = new Map<string, { fx: HfFixture; imported: ImportHfResult; ids: number[]; ref: Float32Array }>();
before(async () => {
  const runs: { name: string; fx: HfFixture; imported: ImportHfResult; ids: number[] }[] = [];
  for (const [name, opts] of Object.entries(CASES)) {
    const src = join(root, `${opts.modelType}-${opts.seed}`);
    const fx = await writeHfFixture({ ...opts, dir: src });
    const imported = await importHfCheckpoint(src, { out: join(root, `${opts.modelType}-${opts.seed}-out`) });
    const ids = Array.from({ length: N }, (_, i) => (i === 4 || i === 9 ? fx.ids.mask : (i * 37 + 5) % 560));
    runs.push({ name, fx, imported, ids });
  }
  const halfRuns: typeof runs = [];
  for (const [name, opts] of Object.entries(FLOAT16_CASES)) {
    const src = join(root, `${opts.modelType}-${opts.seed}`);
    const fx = await writeHfFixture({ ...opts, dir: src });
    const imported = await importHfCheckpoint(src, { out: join(root, `${opts.modelType}-${opts.seed}-f16`), dtype: "float16" });
    const ids = Array.from({ length: N }, (_, i) => (i === 4 || i === 9 ? fx.ids.mask : (i * 41 + 3) % 560));
    halfRuns.push({ name, fx, imported, ids });
  }
  const refs = await referenceLogits([
    ...runs.map((r) => ({ dir: r.fx.dir, ids: r.ids })),
    ...halfRuns.flatMap((r) => [
      { dir: `float16:${r.fx.dir}`, ids: r.ids },
      { dir: r.fx.dir, ids: r.ids },
    ]),
  ]);
  runs.forEach((r, k) => prepared.set(r.name, { fx: r.fx, imported: r.imported, ids: r.ids, ref: refs[k]! }));
  halfRuns.forEach((r, k) =>
    preparedHalf.set(r.name, { ...r, ref: refs[runs.length + 2 * k]!, refUnrounded: refs[runs.length + 2 * k + 1]! }),
  );
});
const preparedHalf = new Map<string, { fx: HfFixture; imported: ImportHfResult; ids: number[]; ref: Float32Array; refUnrounded: Float32Array }>();

for (const [name, opts] of Object.entries(CASES)) {
  test(`${name}: import-hf logits equal the PyTorch reference (max |Δ| ≤ ${TOL}); cached = uncached (prefix, dual)`, async (t) => {
    const { fx, imported, ids, ref } = prepared.get(name)!;
    const m = imported.model.manifest;
    assert.equal(m.shifted_logits, opts.modelType === "Dream");
    assert.equal(m.mask_id, fx.ids.mask);
    if (opts.editTokens) {
      // The tiny-coder tokenizer has ids 0..564; the fixture appends <|expand|> 565, <|delete|> 566.
      assert.deepEqual(
        [m.expand_id, m.delete_id, m.special_tokens?.expand, m.special_tokens?.delete],
        [565, 566, "<|expand|>", "<|delete|>"],
      );
    } else assert.equal(m.expand_id, undefined);

    const { delta, scale } = await checkAgainstReference(imported, ids, ref);
    t.diagnostic(`max |Δlogit| vs PyTorch ${delta.toExponential(2)} (max |logit| ${scale.toFixed(2)}, torch via ${python})`);
  });
}

for (const name of Object.keys(FLOAT16_CASES)) {
  test(`${name}: import-hf --dtype float16 logits equal PyTorch on float16-rounded weights (max |Δ| ≤ ${TOL}), stay within the half-precision bound of the unrounded checkpoint; cached = uncached`, async (t) => {
    const { imported, ids, ref, refUnrounded } = preparedHalf.get(name)!;
    const m = imported.model.manifest;
    assert.equal(m.weight_dtype, "float16");
    assert.equal(m.source?.["dtype"], "float16");
    assert.equal(imported.weightBytes, imported.parameters * 2);
    const { delta, scale, full } = await checkAgainstReference(imported, ids, ref);
    const deltaUnrounded = maxAbsDiff(full.logits, refUnrounded);
    const bound = halfBound(m.n_layers, scale);
    assert.ok(deltaUnrounded <= bound, `float16 vs the unrounded checkpoint: max |Δlogit| ${deltaUnrounded} > bound ${bound}`);
    if (FLOAT16_CASES[name]!.dtype === "BF16") {
      // bfloat16's 8-bit mantissa fits float16's 10 bits: in float16's range the conversion is exact
      // (only values under 2^-14 lose bits as float16 subnormals), so the logits stay within TOL.
      assert.ok(deltaUnrounded <= TOL, `BF16 checkpoint as float16: max |Δlogit| ${deltaUnrounded} > ${TOL}`);
    } else {
      // From float32 it costs something: the comparison above was not against the rounded weights again.
      assert.ok(deltaUnrounded > TOL, `float16 storage changed no logit by more than ${TOL}: were the weights rounded at all?`);
    }
    t.diagnostic(
      `max |Δlogit|: vs PyTorch on float16-rounded weights ${delta.toExponential(2)}, vs the unrounded checkpoint ${deltaUnrounded.toExponential(2)} ` +
        `(bound ${bound.toExponential(2)}; max |logit| ${scale.toFixed(2)})`,
    );
  });
}

/** Full-forward logits of an imported model against reference logits (≤ TOL), then prefix/dual cached = uncached. */
async function checkAgainstReference(
  imported: ImportHfResult,
  ids: number[],
  ref: Float32Array,
): Promise<{ delta: number; scale: number; full: Awaited<ReturnType<typeof ortForward>> }> {
    const m = imported.model.manifest;
    const cfg: PolicyModelConfig = configFromManifest(m);
    const positions = range(0, N);
    const session = await ort.InferenceSession.create(imported.model.modelPath, { intraOpNumThreads: 1 });
    const full = await ortForward(session, cfg, 1, ids, positions, new Array(N).fill(1));
    assert.equal(ref.length, N * m.vocab_size);
    const delta = maxAbsDiff(full.logits, ref);
    let scale = 0;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    assert.ok(scale > 1, `reference logits too flat to test anything (max |logit| ${scale})`);
    assert.ok(delta <= TOL, `max |Δlogit| ${delta} > ${TOL} (max |logit| ${scale})`);

    // The rollout's cache contract on the imported graph: K/V carry the K/V heads and their positions.
    const H = kvHeads(cfg);
    const Dh = headDim(cfg);
    const V = m.vocab_size;
    const pick = (keep: number[]) => ({
      keys: full.keys.map((k) => selectPositions(k, 1, H, Dh, keep)),
      values: full.values.map((v) => selectPositions(v, 1, H, Dh, keep)),
    });
    const a = 6;
    const cur = range(a, N);
    const prefix = await ortForward(
      session,
      cfg,
      1,
      cur.map((j) => ids[j]!),
      cur,
      new Array(N).fill(1),
      pick(range(0, a)),
    );
    assert.ok(maxAbsDiff(prefix.logits, logitRows(full.logits, N, V, 0, a, N)) < TOL, "prefix cache");
    const [b0, b1] = [4, 9];
    const block = range(b0, b1);
    const dual = await ortForward(
      session,
      cfg,
      1,
      block.map((j) => ids[j]!),
      block,
      new Array(N).fill(1),
      pick([...range(0, b0), ...range(b1, N)]),
    );
    assert.ok(maxAbsDiff(dual.logits, logitRows(full.logits, N, V, 0, b0, b1)) < TOL, "dual cache");
    return { delta, scale, full };
}

test("weights as ONNX external data (threshold forced small) give the same logits, from the model path and from bytes + externalData", async () => {
  const src = join(root, "dream-external");
  await writeHfFixture({ modelType: "Dream", seed: 21, dir: src });
  const inline = await importHfCheckpoint(src, { out: join(root, "dream-inline") });
  const ext = await importHfCheckpoint(src, { out: join(root, "dream-external-out"), externalDataThreshold: 1024 });
  assert.equal(inline.external, false);
  assert.equal(ext.external, true);
  const loaded = await loadModel(join(root, "dream-external-out"));
  assert.deepEqual(loaded.externalDataFiles, ["model.onnx.data"]);
  assert.ok(loaded.modelBytes.byteLength < 64 * 1024, `model.onnx should hold no weights, is ${loaded.modelBytes.byteLength} bytes`);
  const cfg = configFromManifest(loaded.manifest);
  const ids = range(0, 10).map((i) => (i * 13 + 7) % 500);
  const pos = range(0, 10);
  const mask = new Array(10).fill(1);
  const a = await ortForward(await ort.InferenceSession.create(inline.model.modelPath), cfg, 1, ids, pos, mask);
  const b = await ortForward(await ort.InferenceSession.create(loaded.modelPath), cfg, 1, ids, pos, mask);
  assert.equal(maxAbsDiff(a.logits, b.logits), 0);
  const data = new Uint8Array(await readFile(join(loaded.dir, "model.onnx.data")));
  const fromBytes = await ort.InferenceSession.create(loaded.modelBytes, { externalData: [{ path: "model.onnx.data", data }] });
  const c = await ortForward(fromBytes, cfg, 1, ids, pos, mask);
  assert.equal(maxAbsDiff(a.logits, c.logits), 0);
});

test("--dtype float16 with external data (threshold forced small): 2-byte ranges checked by loadModel, the same logits as the inline float16 import", async () => {
  const src = join(root, "dream-external-f16");
  await writeHfFixture({ modelType: "Dream", seed: 22, dir: src });
  const inline = await importHfCheckpoint(src, { out: join(root, "dream-f16-inline"), dtype: "float16" });
  const ext = await importHfCheckpoint(src, { out: join(root, "dream-f16-external"), dtype: "float16", externalDataThreshold: 1024 });
  assert.equal(ext.external, true);
  const loaded = await loadModel(join(root, "dream-f16-external"));
  assert.equal(loaded.manifest.weight_dtype, "float16");
  const dataBytes = (await readFile(join(loaded.dir, "model.onnx.data"))).byteLength;
  assert.ok(dataBytes >= ext.weightBytes && dataBytes < ext.weightBytes + 4096 * 40, `data file ${dataBytes} B for ${ext.weightBytes} B of float16`);
  const cfg = configFromManifest(loaded.manifest);
  const ids = range(0, 10).map((i) => (i * 17 + 3) % 500);
  const pos = range(0, 10);
  const mask = new Array(10).fill(1);
  const a = await ortForward(await ort.InferenceSession.create(inline.model.modelPath), cfg, 1, ids, pos, mask);
  const b = await ortForward(await ort.InferenceSession.create(loaded.modelPath), cfg, 1, ids, pos, mask);
  assert.equal(maxAbsDiff(a.logits, b.logits), 0);
});
