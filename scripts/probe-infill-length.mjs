#!/usr/bin/env node
// Diagnostic: does a DreamOn-trained model know how long a middle is? One forward over
// prefix + M masks + suffix + EOS per infilling row (the rollout's canvas); the first middle
// position whose EOS probability passes 0.5 is the model's length estimate, compared with the
// true middle's token count (exact, within one token, mean |error|, mean signed error).
// What the variable-length EOS cut (services/rollout/README.md, "Length cuts") can reach.
//   node scripts/probe-infill-length.mjs MODEL_DIR [heldout|train] [M=32] [ROWS=60]   (after `npm run build`)
import ort from "onnxruntime-node";
import { loadRolloutModel } from "../services/rollout/dist/runtime/rollout-model.js";
import { OrtDenoiser } from "../services/rollout/dist/runtime/ort-denoiser.js";
import { loadInfillRows } from "../shared/dist/infill/index.js";

const [dir, split = "heldout", masksArg = "32", rowsArg = "60"] = process.argv.slice(2);
const M = Number(masksArg);
const N = Number(rowsArg);
if (!dir || !["heldout", "train"].includes(split) || !(M >= 1) || !(N >= 1)) {
  console.error("usage: node scripts/probe-infill-length.mjs MODEL_DIR [heldout|train] [MASKS=32] [ROWS=60]");
  process.exit(2);
}
const model = await loadRolloutModel(dir);
const m = model.manifest;
const session = await ort.InferenceSession.create(Buffer.from(model.modelBytes), { intraOpNumThreads: 2 });
const den = new OrtDenoiser(ort, session, m, model.tokenizerVocabSize);
const file = new URL(`../datasets/toy/${split === "train" ? "train.jsonl" : "test-instances.jsonl"}`, import.meta.url).pathname;
const rows = loadInfillRows(file, split, { seed: 1 }).slice(0, N);
const V = m.vocab_size;
const errors = [];
for (const r of rows) {
  const pre = model.codec.encode(r.prefix);
  const ids = [...pre, ...new Array(M).fill(m.mask_id), ...model.codec.encode(r.suffix), m.eos_id];
  const T = ids.length;
  const { logits } = await den.forward({
    batch: 1,
    length: T,
    pastLength: 0,
    ids: Int32Array.from(ids),
    positions: Int32Array.from(ids, (_, i) => i),
    attention: new Float32Array(T).fill(1),
    wantPresent: false,
  });
  let estimate = M;
  for (let k = 0; k < M; k++) {
    const off = (pre.length + k) * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (v !== m.mask_id) max = Math.max(max, logits[off + v]);
    let z = 0;
    for (let v = 0; v < V; v++) if (v !== m.mask_id) z += Math.exp(logits[off + v] - max);
    if (Math.exp(logits[off + m.eos_id] - max) / z > 0.5) {
      estimate = k;
      break;
    }
  }
  errors.push(estimate - model.codec.encode(r.middle).length);
}
const share = (f) => `${((100 * errors.filter(f).length) / errors.length).toFixed(0)} %`;
const mean = (f) => (errors.reduce((a, e) => a + f(e), 0) / errors.length).toFixed(2);
console.log(
  `${m.name}: ${errors.length} ${split} rows, ${M} masks: length estimate exact ${share((e) => e === 0)}, within one token ${share((e) => Math.abs(e) <= 1)}, mean |error| ${mean(Math.abs)}, mean error ${mean((e) => e)} tokens`,
);
