// A model imported with `import-hf --dtype float16` (float16 weights, each read through a Cast to
// float32) served by the rollout: it decodes exactly what a float32 model holding the same rounded
// weights decodes, in every cache mode (cached = uncached with an exact refresh at threshold 1.0);
// a pushed float32 version replaces the float16 weights and then decodes exactly as the float32
// import; a float16 model in external data refuses a push with the reason.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HostTensor } from "@rlmesh/shared";
import { importHfCheckpoint, parseModel, readWeights } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { loadRolloutModel, OrtRolloutEngine } from "./ort-rollout-engine.js";

const root = mkdtempSync(join(tmpdir(), "rlmesh-float16-model-"));
after(() => rmSync(root, { recursive: true, force: true }));

const requests = [
  { promptId: "a", prompt: "Write a function f(x) that returns x plus 3.", samples: 2 },
  { promptId: "b", prompt: "Print one.", samples: 1 },
];

/** Every float initializer of a model directory's graph as a float32 push (float16 ones upcast). */
function pushOf(modelBytes: Uint8Array): HostTensor[] {
  return [...readWeights(parseModel(modelBytes))].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: w.shape, data: w.data }));
}

test("a float16 import decodes as float32 with its rounded weights in every cache mode, cached = uncached; a float32 push makes it the float32 import exactly", { timeout: 180_000 }, async () => {
  const fx = await writeHfFixture({ modelType: "Dream", dir: join(root, "hf"), seed: 6 });
  const f32 = await importHfCheckpoint(fx.dir, { out: join(root, "f32"), name: "dream-tiny" });
  const f16 = await importHfCheckpoint(fx.dir, { out: join(root, "f16"), name: "dream-tiny", dtype: "float16" });
  const [m32, m16] = [await loadRolloutModel(f32.model.dir), await loadRolloutModel(f16.model.dir)];
  assert.equal(m16.manifest.weight_dtype, "float16");
  assert.notEqual(m16.fingerprint, m32.fingerprint, "float16 and float32 imports are different models to the mesh");
  const e32 = await OrtRolloutEngine.create({ model: m32, intraOpNumThreads: 1 });
  const e16 = await OrtRolloutEngine.create({ model: m16, intraOpNumThreads: 1 });
  try {
    const decode = async (e: OrtRolloutEngine, params: Record<string, unknown>) =>
      (await e.generateSamples(requests, { max_new_tokens: 16, block_length: 8, seed: 9, ...params })).samples.map((s) => s.tokenIds);
    const original = await decode(e32, { temperature: 1, cache: "dual" });
    // The float32 engine with the float16-rounded weights (version 1) is the float16 model's twin.
    await e32.swapWeights(1, pushOf(f16.model.modelBytes));
    for (const temperature of [0, 1]) {
      const exact = { temperature, threshold: 1, cache_refresh: "step" };
      const uncached = await decode(e16, { ...exact, cache: "none" });
      assert.ok(new Set(uncached.flat()).size > 3, "varied tokens");
      assert.deepEqual(await decode(e32, { ...exact, cache: "none" }), uncached, `temperature ${temperature}: the rounded float32 twin`);
      for (const cache of ["prefix", "dual"]) {
        assert.deepEqual(await decode(e16, { ...exact, cache }), uncached, `temperature ${temperature}, ${cache} cache = uncached`);
      }
    }
    for (const cache of ["none", "prefix", "dual"]) {
      const out = await decode(e16, { temperature: 1, threshold: 0.9, cache });
      assert.deepEqual(await decode(e32, { temperature: 1, threshold: 0.9, cache }), out, `${cache}, default refresh: as the twin`);
    }
    const rounded = await decode(e16, { temperature: 1, cache: "dual" });
    assert.notDeepEqual(rounded, original, "float16 rounding changes some sampled token of this fixture");
    // Version 1 on the float16 engine: the float32 import's own weights, pushed as float32.
    await e16.swapWeights(1, pushOf(f32.model.modelBytes));
    assert.equal(e16.info().policyVersion, 1);
    assert.deepEqual(await decode(e16, { temperature: 1, cache: "dual" }), original, "a float32 push runs exactly");
  } finally {
    await e32.close();
    await e16.close();
  }
});

test("a float16 model in external data refuses a float32 push, naming the weight and the reason, and keeps serving its version", { timeout: 120_000 }, async () => {
  const fx = await writeHfFixture({ modelType: "Dream", dir: join(root, "hf-ext"), seed: 8 });
  const ext = await importHfCheckpoint(fx.dir, { out: join(root, "f16-ext"), dtype: "float16", externalDataThreshold: 1 });
  const model = await loadRolloutModel(ext.model.dir);
  const engine = await OrtRolloutEngine.create({ model, intraOpNumThreads: 1 });
  try {
    const params = { temperature: 1, max_new_tokens: 8, block_length: 8, cache: "dual" as const, seed: 3 };
    const before = (await engine.generateSamples(requests, params)).samples.map((s) => s.tokenIds);
    await assert.rejects(
      engine.swapWeights(1, pushOf(ext.model.modelBytes).map((t) => (t.data.length > 0 ? t : { ...t, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)).fill(0.01) }))),
      /weight .* is stored as float16 in external data \(model\.onnx\.data: a model imported with --dtype float16 over 2 GB\); a pushed float32 version cannot be written over it/,
    );
    assert.equal(engine.info().policyVersion, 0);
    assert.deepEqual((await engine.generateSamples(requests, params)).samples.map((s) => s.tokenIds), before);
  } finally {
    await engine.close();
  }
});
