// A model whose weights are in ONNX external data (import-hf writes model.onnx.data above 2 GB;
// forced here with a 1-byte threshold on a tiny Dream checkpoint): the rollout opens it from its
// path and swaps weight versions through a copy of its data files, decoding exactly what the
// same model with inline weights decodes, before and after a swap.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HostTensor } from "@rlmesh/shared";
import { importHfCheckpoint, parseModel, readWeights } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { loadRolloutModel, OrtRolloutEngine } from "./ort-rollout-engine.js";

const root = mkdtempSync(join(tmpdir(), "rlmesh-external-weights-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("an external-data model decodes like its inline twin, and after a weight swap too; the version copy is removed", { timeout: 120_000 }, async () => {
  const fx = await writeHfFixture({ modelType: "Dream", dir: join(root, "hf"), seed: 4 });
  const inline = await importHfCheckpoint(fx.dir, { out: join(root, "inline"), name: "dream-tiny" });
  const ext = await importHfCheckpoint(fx.dir, { out: join(root, "ext"), name: "dream-tiny", externalDataThreshold: 1 });
  assert.equal(inline.model.externalDataFiles.length, 0);
  assert.ok(ext.model.externalDataFiles.length > 0, "weights went to external data");
  const [mi, me] = [await loadRolloutModel(inline.model.dir), await loadRolloutModel(ext.model.dir)];
  assert.equal(mi.externalModelPath, undefined);
  assert.ok(me.externalModelPath?.endsWith("model.onnx"));
  assert.equal(me.fingerprint === mi.fingerprint, false, "the fingerprint covers the data file layout");
  const engines = [await OrtRolloutEngine.create({ model: mi, intraOpNumThreads: 1 }), await OrtRolloutEngine.create({ model: me, intraOpNumThreads: 1 })];
  try {
    const requests = [
      { promptId: "a", prompt: "Write a function f(x) that returns x plus 3.", samples: 2 },
      { promptId: "b", prompt: "Print one.", samples: 2 },
    ];
    const params = { temperature: 1, max_new_tokens: 16, block_length: 8, cache: "dual" as const, seed: 9 };
    const decode = async (e: OrtRolloutEngine) => (await e.generateSamples(requests, params)).samples.map((s) => s.tokenIds);
    const before = await Promise.all(engines.map(decode));
    assert.deepEqual(before[1], before[0]);
    // Version 1: every weight scaled (constants kept), pushed to both.
    const tensors: HostTensor[] = [...readWeights(parseModel(inline.model.modelBytes))].map(([name, w]) => ({
      name,
      dtype: "DTYPE_FLOAT32" as const,
      shape: w.shape,
      data: name.startsWith("const.") ? w.data : w.data.map((x, i) => x * (1.5 + 0.1 * Math.sin(i))),
    }));
    for (const e of engines) await e.swapWeights(1, tensors);
    const afterSwap = await Promise.all(engines.map(decode));
    assert.deepEqual(afterSwap[1], afterSwap[0]);
    assert.notDeepEqual(afterSwap[0], before[0], "the new weights decode differently");
    assert.equal(engines[1]!.info().policyVersion, 1);
  } finally {
    for (const e of engines) await e.close();
  }
  assert.deepEqual(readdirSync(tmpdir()).filter((f) => f.startsWith("rlmesh-weights-w0-v1-")), [], "the version copy is removed");
});
