// Infill samples in a TrainStep: prompt = the prefix, response = the middle, suffix_token_ids =
// the program after it. The learner puts the suffix after the response and scores only the middle.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, InvalidArgumentError, type GrpoParams, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";
import { loadModel } from "@rlmesh/shared/model/index";

import { initJax } from "../model/jax-runtime.js";
import { JaxPolicy } from "../model/jax-policy.js";
import { GrpoTrainer } from "./grpo-trainer.js";
import { writeRandomModelDir } from "../testing/random-model-dir.js";
import { maskedLogLik } from "../testing/masked-log-lik.js";
import type { NamedTensors } from "../optim/named-tensors.js";

await initJax();
const root = await mkdtemp(join(tmpdir(), "rlmesh-infill-train-"));
after(() => rm(root, { recursive: true, force: true }));
const modelDir = await writeRandomModelDir(join(root, "model"), "ci", 7, 64);
const model = await loadModel(modelDir);
const PAD = model.manifest.pad_id;
const MASK = model.manifest.mask_id;
const logger = createLogger("learner-test", { level: "error" });
let dirs = 0;
const open = () => GrpoTrainer.open({ modelDir, checkpointDir: join(root, `ckpt-${dirs++}`), logger });
const FAST: GrpoParams = { lr: 3e-3, warmupSteps: 0, ppoEpochs: 2 };
const request = (step: number, samples: TrainSample[]): TrainStepRequest => ({ jobId: "job-1", step, samples, params: FAST, seed: 0 });

function infill(promptId: string, prefix: number[], middle: number[], suffix: number[], reward: number): TrainSample {
  return { promptId, promptTokenIds: prefix, responseTokenIds: middle, suffixTokenIds: suffix, reward, policyVersion: 0, policyJobId: "job-1" };
}

/** Two groups: in each, one rewarded and one unrewarded middle between the same prefix and suffix. */
const samples = [
  infill("p1", [10, 11, 12], [20, 21, 22], [40, 41], 1),
  infill("p1", [10, 11, 12], [30, 31], [40, 41], 0),
  infill("p2", [13, 14], [50, 51], [42, 43, 44], 0),
  infill("p2", [13, 14], [24, 25, 26, 27], [42, 43, 44], 1),
];

const named = (t: GrpoTrainer): NamedTensors => Object.fromEntries(t.weights().tensors.map((h) => [h.name, { shape: h.shape, data: h.data as Float32Array }]));
const scorer = JaxPolicy.fromModelBytes(model.modelBytes, { nLayers: model.manifest.n_layers, vocabSize: model.manifest.vocab_size });

/** log p(middle | prefix, suffix) with the whole middle masked, per sample; `withSuffix` false drops the suffix. */
async function middleLogLik(weights: NamedTensors, xs: TrainSample[], withSuffix = true): Promise<number[]> {
  const rows = xs.map((s) => {
    const P = s.promptTokenIds.length;
    const R = s.responseTokenIds.length;
    return { ids: [...s.promptTokenIds, ...s.responseTokenIds, ...(withSuffix ? s.suffixTokenIds : [])], scored: (j: number) => j >= P && j < P + R };
  });
  return maskedLogLik(scorer, weights, rows, { mask: MASK, pad: PAD });
}

test("an infill TrainStep raises log p(rewarded middle | prefix, suffix) over the unrewarded one; the suffix is context the update sees", async () => {
  const t = await open();
  const before = await middleLogLik(named(t), samples);
  const res = await t.trainStep(request(0, samples));
  assert.equal(res.policyVersion, 1);
  assert.equal(res.stats.skipped, false);
  assert.equal(res.stats.numSamples, 4);
  const afterLl = await middleLogLik(named(t), samples);
  const gain = samples.map((_, i) => afterLl[i]! - before[i]!);
  const msg = samples.map((s, i) => `sample ${i} reward ${s.reward}: ${before[i]!.toFixed(4)} -> ${afterLl[i]!.toFixed(4)}`).join("; ");
  assert.ok(gain[0]! > 0 && gain[3]! > 0, msg);
  assert.ok(gain[0]! - gain[1]! > 0.05 && gain[3]! - gain[2]! > 0.05, msg);
  // The same step without the suffixes gives other weights: the suffix was in the sequence.
  const u = await open();
  await u.trainStep(request(0, samples.map((s) => ({ ...s, suffixTokenIds: [] }))));
  const a = named(t)["layers.0.attn.wq"]!.data;
  const b = named(u)["layers.0.attn.wq"]!.data;
  assert.ok(a.some((v, i) => Math.abs(v - b[i]!) > 1e-7), "the suffix changes the update");
  t.dispose();
  u.dispose();
});

test("infill samples are validated: a MASK in the suffix, or two suffixes under one prompt_id, is INVALID_ARGUMENT naming the field", async () => {
  const t = await open();
  const bad = [...samples];
  bad[1] = { ...bad[1]!, suffixTokenIds: [40, MASK] };
  await assert.rejects(
    t.trainStep(request(0, bad)),
    (err: unknown) => err instanceof InvalidArgumentError && /samples\[1\]\.suffix_token_ids\[1\]/.test(err.message),
  );
  const other = [...samples];
  other[1] = { ...other[1]!, suffixTokenIds: [40, 45] };
  await assert.rejects(
    t.trainStep(request(0, other)),
    (err: unknown) => err instanceof InvalidArgumentError && /samples\[1\]\.suffix_token_ids/.test(err.message) && /one prefix and suffix/.test(err.message),
  );
  t.dispose();
});
