#!/usr/bin/env node
// Diagnostic for the length search: runs the variable-length decode with the search on each
// infilling row, scores EVERY candidate program of every row in the sandbox, and prints how often
// a passing candidate exists in the window ("any"), how often the best-scored one passes ("top")
// and how often the engine's pick (best-scored after the syntax screen) passes ("pick"). Writes
// per-candidate records (row, rank, length, score, screen, pass, middle) to OUT.
//   node scripts/probe-infill-search-candidates.mjs MODEL_DIR [train|compositional|instances] [ROWS=150] [W=10] [INITIAL=32] [OUT=/tmp/search-candidates.json]
// (after `npm run build`; starts its own Redis and executor for the sandbox, as `rlmesh eval` does)
import { writeFileSync } from "node:fs";
import { createLogger } from "../shared/dist/index.js";
import { loadInfillRows, infillProgram } from "../shared/dist/infill/index.js";
import { pythonLooksWellFormed } from "../shared/dist/infill/python-shape.js";
import { loadRolloutModel, OrtRolloutEngine } from "../services/rollout/dist/runtime/ort-rollout-engine.js";
import { OrtDenoiser } from "../services/rollout/dist/runtime/ort-denoiser.js";
import { decodeInfillBatch } from "../services/rollout/dist/decoding/infill-decoder.js";
import { runEval } from "../services/executor/dist/run-eval.js";
import ort from "onnxruntime-node";

const [dir, split = "train", rowsArg = "150", wArg = "10", initArg = "32", out = "/tmp/search-candidates.json"] = process.argv.slice(2);
const files = { train: "train.jsonl", compositional: "test-compositional.jsonl", instances: "test-instances.jsonl" };
if (!files[split]) throw new Error(`split must be one of ${Object.keys(files).join(", ")}, got ${split}`);
const model = await loadRolloutModel(dir);
const rows = loadInfillRows(new URL(`../datasets/toy/${files[split]}`, import.meta.url).pathname, split === "train" ? "train" : "heldout", { seed: 1 }).slice(0, Number(rowsArg));
const engine = await OrtRolloutEngine.create({ model, replicas: 1, logger: createLogger("probe", { level: "warn" }) });
// The engine resolves the parameters and encodes the rows exactly as bench infill's variable modes do.
const reqs = rows.map((r, i) => ({ itemId: String(i), prefix: r.prefix, suffix: r.suffix, initialLength: Number(initArg), maxLength: 64, seed: 1 + i }));
const { params, items } = engine.prepareInfill(reqs, { variable: true, params: { temperature: 0, threshold: 1, seed: 1, length_search: Number(wArg) } });
await engine.close();
const session = await ort.InferenceSession.create(Buffer.from(model.modelBytes), { intraOpNumThreads: 2 });
const den = new OrtDenoiser(ort, session, model.manifest, model.tokenizerVocabSize);
const seqs = [];
for (let k = 0; k < items.length; k += 16) seqs.push(...(await decodeInfillBatch(den, items.slice(k, k + 16).map((x) => x.input), params, {})));
const recs = [];
const programs = new Map();
seqs.forEach((s, i) => {
  const c = items[i];
  s.candidates.forEach((cand, rank) => {
    const middle = model.codec.decode(cand.middleIds);
    const id = `${i}:${rank}`;
    programs.set(id, infillProgram(rows[i], middle));
    const wellFormed = pythonLooksWellFormed(model.codec.decode([...c.prefixIds, ...cand.middleIds, ...c.suffixIds]));
    recs.push({ id, row: i, rank, length: cand.middleIds.length, trueLength: model.codec.encode(rows[i].middle).length, score: cand.score, variable: cand.variable, wellFormed, middle });
  });
});
const dataset = recs.map((r) => ({ task_id: r.id, prompt: rows[r.row].prompt, tests: rows[r.row].tests, source: rows[r.row].source }));
const report = await runEval({ dataset, responses: programs, logger: createLogger("probe", { level: "warn" }) });
const byId = new Map(recs.map((r) => [r.id, r]));
for (const r of report.rows) byId.get(r.task_id).pass = r.unscored ? null : r.result.reward === 1;
writeFileSync(out, JSON.stringify(recs));
const perRow = rows.map((_, i) => recs.filter((r) => r.row === i));
const share = (f) => `${((100 * perRow.filter(f).length) / perRow.length).toFixed(1)} %`;
console.log(
  `${model.manifest.name}: ${rows.length} ${split} rows, search ±${wArg} from ${initArg} masks: a passing candidate in the window ${share((rs) => rs.some((r) => r.pass))}, ` +
    `the true length in the window ${share((rs) => rs.some((r) => r.length === r.trueLength))}, best-scored passes ${share((rs) => rs[0].pass)}, ` +
    `the pick (best-scored well-formed) passes ${share((rs) => (rs.find((r) => r.wellFormed) ?? rs[0]).pass)}; records in ${out}`,
);
