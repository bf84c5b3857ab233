#!/usr/bin/env node
// Diagnostic: can the model's own confidence pick the middle's length? For each infilling row,
// decode the middle at every fixed length 1..MAX (greedy, one token per step, as bench infill's
// oracle mode), score every program in the sandbox, and write per (row, length): pass, the
// decode's sum ln p over the middle's tokens and over its committed EOS, and the middle's length.
//   node scripts/probe-infill-length-search.mjs MODEL_DIR [heldout|train] [ROWS=40] [MAX=48] [OUT=/tmp/length-search.json]
// (after `npm run build`; starts its own Redis and executor for the sandbox, as `rlmesh eval` does)
import { writeFileSync } from "node:fs";
import { createLogger } from "../shared/dist/index.js";
import { loadInfillRows, infillProgram } from "../shared/dist/infill/index.js";
import { loadRolloutModel, OrtRolloutEngine } from "../services/rollout/dist/runtime/ort-rollout-engine.js";
import { runEval } from "../services/executor/dist/run-eval.js";
import ort from "onnxruntime-node";
import { OrtDenoiser } from "../services/rollout/dist/runtime/ort-denoiser.js";

const [dir, split = "train", rowsArg = "40", maxArg = "48", out = "/tmp/length-search.json"] = process.argv.slice(2);
const N = Number(rowsArg);
const MAX = Number(maxArg);
const model = await loadRolloutModel(dir);
const file = new URL(`../datasets/toy/${split === "train" ? "train.jsonl" : "test-instances.jsonl"}`, import.meta.url).pathname;
const rows = loadInfillRows(file, split, { seed: 1 }).slice(0, N);
const engine = await OrtRolloutEngine.create({ model, replicas: 1, logger: createLogger("probe", { level: "warn" }) });
const items = [];
rows.forEach((r, i) => {
  for (let L = 1; L <= MAX; L++) items.push({ itemId: `${i}:${L}`, prefix: r.prefix, suffix: r.suffix, initialLength: L, maxLength: L, seed: 1 + i });
});
const t0 = performance.now();
const res = { samples: [] };
for (let k = 0; k < items.length; k += 2048) {
  const part = await engine.infillSamples(items.slice(k, k + 2048), { variable: false, params: { temperature: 0, threshold: 1, seed: 1 } });
  res.samples.push(...part.samples);
}
console.error(`decoded ${items.length} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
await engine.close();
const programs = new Map();
const recs = new Map();
for (const s of res.samples) {
  const [i, L] = s.itemId.split(":").map(Number);
  programs.set(s.itemId, infillProgram(rows[i], s.middleText));
  recs.set(s.itemId, { program: programs.get(s.itemId), middle: s.middleText, row: i, L, len: s.middleTokenIds.length, logProb: s.logProb, trueLen: model.codec.encode(rows[i].middle).length, exact: s.middleText === rows[i].middle });
}
const dataset = rows.flatMap((r, i) => Array.from({ length: MAX }, (_, k) => ({ task_id: `${i}:${k + 1}`, prompt: r.prompt, tests: r.tests, source: r.source })));
const report = await runEval({ dataset, responses: programs, logger: createLogger("probe", { level: "warn" }) });
for (const r of report.rows) {
  const rec = recs.get(r.task_id);
  rec.pass = r.unscored ? null : r.result.reward === 1;
}
// One forward over prefix + 32 masks + suffix + EOS: P(EOS) and P(expand) per mask position.
const m = model.manifest;
const session = await ort.InferenceSession.create(Buffer.from(model.modelBytes), { intraOpNumThreads: 2 });
const den = new OrtDenoiser(ort, session, m, model.tokenizerVocabSize);
const V = m.vocab_size;
const eosDist = [];
for (const r of rows) {
  const pre = model.codec.encode(r.prefix);
  const ids = [...pre, ...new Array(32).fill(m.mask_id), ...model.codec.encode(r.suffix), m.eos_id];
  const T = ids.length;
  const { logits } = await den.forward({ batch: 1, length: T, pastLength: 0, ids: Int32Array.from(ids), positions: Int32Array.from(ids, (_, i) => i), attention: new Float32Array(T).fill(1), wantPresent: false });
  const pe = [];
  for (let k = 0; k < 32; k++) {
    const off = (pre.length + k) * V;
    let max = -Infinity;
    for (let v = 1; v < V; v++) max = Math.max(max, logits[off + v]);
    let z = 0;
    for (let v = 1; v < V; v++) z += Math.exp(logits[off + v] - max);
    pe.push(Math.exp(logits[off + m.eos_id] - max) / z);
  }
  eosDist.push(pe);
}
writeFileSync(out, JSON.stringify({ recs: [...recs.values()], eosDist }));
const byRow = new Map();
for (const r of recs.values()) byRow.set(r.row, [...(byRow.get(r.row) ?? []), r]);
const share = (f) => `${((100 * [...byRow.values()].filter(f).length) / byRow.size).toFixed(1)} %`;
console.log(
  `${model.manifest.name}: ${byRow.size} ${split} rows, lengths 1..${MAX}: passes at the true length ${share((rs) => rs.some((r) => r.L === r.trueLen && r.pass))}, at some length ${share((rs) => rs.some((r) => r.pass))}; per (row, length) records in ${out}`,
);
