// SubmitJob's model check on real model directories (copies of the shipped tiny-coder): a broken
// manifest is INVALID_ARGUMENT naming spec.model_dir, the file and the field; a model other than
// the one the workers serve (another name, or the same name with other weights) is
// FAILED_PRECONDITION naming both; a byte-identical copy at another path is the same model.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { GrpcError, InvalidArgumentError } from "@rlmesh/shared";
import { importHfCheckpoint, modelBytes, parseModel, readWeights, replaceWeights } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { modelFingerprint } from "@rlmesh/shared/model/model-fingerprint";
import { DEFAULT_MODEL_DIR, TOY_DATASET_DIR } from "@rlmesh/shared/repo-paths";
import { normalizeSpec } from "../job-spec.js";
import { checkJobModel, type ServedModel } from "./job-model.js";

const dir = mkdtempSync(join(tmpdir(), "rlmesh-job-model-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const spec = (modelDir: string) => normalizeSpec({ modelDir, dataset: { path: join(TOY_DATASET_DIR, "train.jsonl") } });
const shipped: ServedModel = {
  servedBy: "rollout worker rollout-0",
  modelName: "tiny-coder",
  fingerprint: createHash("sha256").update(readFileSync(join(DEFAULT_MODEL_DIR, "model.onnx"))).digest("hex"),
};
const serving = (...served: ServedModel[]) => ({ servedModels: async () => served });

function copyModel(name: string, edit?: (manifest: Record<string, unknown>) => void): string {
  const to = join(dir, name);
  cpSync(DEFAULT_MODEL_DIR, to, { recursive: true });
  if (edit) {
    const m = JSON.parse(readFileSync(join(to, "manifest.json"), "utf8")) as Record<string, unknown>;
    edit(m);
    writeFileSync(join(to, "manifest.json"), JSON.stringify(m, null, 2));
  }
  return to;
}

test("a copy of tiny-coder with vocab_size 999 is INVALID_ARGUMENT naming spec.model_dir, the file and the numbers", async () => {
  const broken = copyModel("vocab-999", (m) => (m["vocab_size"] = 999));
  for (const served of [[], [shipped]]) {
    await assert.rejects(checkJobModel(spec(broken), serving(...served)), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.field, "spec.model_dir");
      assert.match(e.message, new RegExp(`^spec\\.model_dir: ${broken}: model\\.onnx: output "logits" dim 2 is 565, manifest says 999 \\(manifest\\.json vocab_size; outputs\\.logits\\)`));
      return true;
    });
  }
});

test("a manifest that is not JSON, and a missing model file, are named", async () => {
  const notJson = copyModel("not-json");
  writeFileSync(join(notJson, "manifest.json"), "{ name: tiny");
  await assert.rejects(checkJobModel(spec(notJson), serving()), /^InvalidArgumentError: spec\.model_dir: .*not-json: manifest\.json: /);
  const noModel = copyModel("no-model");
  rmSync(join(noModel, "model.onnx"));
  await assert.rejects(checkJobModel(spec(noModel), serving()), /^InvalidArgumentError: spec\.model_dir: .*no-model: model\.onnx/);
});

test("the model the workers serve passes, at its own path or as a byte-identical copy elsewhere; with no worker registered nothing is compared", async () => {
  await checkJobModel(spec(DEFAULT_MODEL_DIR), serving(shipped, { ...shipped, servedBy: "rollout worker rollout-1" }));
  await checkJobModel(spec(copyModel("same")), serving(shipped));
  await checkJobModel(spec(copyModel("renamed-alone", (m) => (m["name"] = "alone"))), serving());
});

test("another model than the workers serve is FAILED_PRECONDITION naming both: another name, or the same name with other weights", async () => {
  const renamed = copyModel("renamed", (m) => (m["name"] = "my-coder"));
  await assert.rejects(checkJobModel(spec(renamed), serving(shipped)), (e: unknown) => {
    assert.ok(e instanceof GrpcError && e.code === status.FAILED_PRECONDITION, String(e));
    assert.match(e.message, new RegExp(`^spec\\.model_dir: ${renamed} is model "my-coder" \\(weights sha256 ${shipped.fingerprint.slice(0, 12)}…\\), but rollout worker rollout-0 serves "tiny-coder" \\(weights sha256 ${shipped.fingerprint.slice(0, 12)}…\\): another model`));
    return true;
  });
  // Same name, one weight changed (a fine-tuned copy).
  const tuned = copyModel("tuned");
  const proto = parseModel(readFileSync(join(tuned, "model.onnx")));
  const w = readWeights(proto, ["final_norm"]).get("final_norm")!;
  w.data[0] = w.data[0]! + 0.25;
  writeFileSync(join(tuned, "model.onnx"), modelBytes(replaceWeights(proto, new Map([["final_norm", w.data]]))));
  await assert.rejects(checkJobModel(spec(tuned), serving(shipped)), (e: unknown) => {
    assert.ok(e instanceof GrpcError && e.code === status.FAILED_PRECONDITION, String(e));
    assert.match(e.message, /is model "tiny-coder" \(weights sha256 [0-9a-f]{12}…\), but rollout worker rollout-0 serves "tiny-coder" \(weights sha256 [0-9a-f]{12}…\): the same name with other weights/);
    assert.ok(!e.message.includes(`is model "tiny-coder" (weights sha256 ${shipped.fingerprint.slice(0, 12)}`), "the tuned copy has its own fingerprint");
    return true;
  });
  // One of several workers serving another model is enough to refuse.
  await assert.rejects(checkJobModel(spec(DEFAULT_MODEL_DIR), serving(shipped, { servedBy: "rollout worker rollout-9", modelName: "random-ci", fingerprint: "ab".repeat(32) })), /rollout worker rollout-9 serves "random-ci"/);
});

test("a float16 import (import-hf --dtype float16) passes when the workers serve it; against its float32 twin it is the same name with other weights, named float16; a bad weight_dtype is INVALID_ARGUMENT", async () => {
  const fx = await writeHfFixture({ modelType: "Dream", dir: join(dir, "hf-dream"), seed: 4 });
  const f16 = await importHfCheckpoint(fx.dir, { out: join(dir, "dream-f16"), name: "dream-tiny", dtype: "float16" });
  const f32 = await importHfCheckpoint(fx.dir, { out: join(dir, "dream-f32"), name: "dream-tiny" });
  const served = async (m: typeof f16.model): Promise<ServedModel> => ({ servedBy: "rollout worker rollout-0", modelName: "dream-tiny", fingerprint: await modelFingerprint(m) });
  await checkJobModel(spec(f16.model.dir), serving(await served(f16.model)));
  await assert.rejects(checkJobModel(spec(f16.model.dir), serving(await served(f32.model))), (e: unknown) => {
    assert.ok(e instanceof GrpcError && e.code === status.FAILED_PRECONDITION, String(e));
    assert.match(e.message, /is model "dream-tiny" \(float16 weights \(import-hf --dtype float16\), weights sha256 [0-9a-f]{12}…\), but rollout worker rollout-0 serves "dream-tiny" \(weights sha256 [0-9a-f]{12}…\): the same name with other weights/);
    return true;
  });
  // float16 weights under a manifest edited to say float32: refused naming the file and the field.
  const lying = join(dir, "dream-f16-lying");
  cpSync(f16.model.dir, lying, { recursive: true });
  const m = JSON.parse(readFileSync(join(lying, "manifest.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(lying, "manifest.json"), JSON.stringify({ ...m, weight_dtype: "float32" }));
  await assert.rejects(checkJobModel(spec(lying), serving()), (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    assert.match(e.message, /model\.onnx: weight "tok_embedding" is FLOAT16, manifest\.json weight_dtype is float32 \(stored as FLOAT\)/);
    return true;
  });
});
