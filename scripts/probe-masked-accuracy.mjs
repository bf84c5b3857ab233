#!/usr/bin/env node
// Diagnostic: how much does the model use context? For the first 30 rows of a dataset, mask one
// response token at a time (plus a fraction of the other response tokens) and report the argmax
// accuracy of the masked token. A model that uses context is far more accurate at fraction 0.
//   node scripts/probe-masked-accuracy.mjs MODEL_DIR DATASET.jsonl   (after `npm run build`)
import { readFileSync } from "node:fs";
import { sftExamplesFromRows } from "../services/learner/dist/sft/train-base-data.js";
import { loadProbeModel } from "./probe-model.mjs";

const [dir, data] = process.argv.slice(2);
if (!dir || !data) {
  console.error("usage: node scripts/probe-masked-accuracy.mjs MODEL_DIR DATASET.jsonl");
  process.exit(2);
}
const { man, tok, forward, argmaxAt } = await loadProbeModel(dir);
const rows = readFileSync(data, "utf8").trim().split("\n").slice(0, 30).map((l) => JSON.parse(l));
for (const frac of [0, 0.5, 1]) {
  let ok = 0;
  let n = 0;
  for (const { promptIds, responseIds } of sftExamplesFromRows(rows, tok, man.eos_id)) {
    const p = promptIds.length;
    const seq = [...promptIds, ...responseIds];
    for (let j = p; j < seq.length; j += 3) {
      // A fixed pseudo-random subset of the other response tokens is masked too.
      const ids = seq.map((x, k) => (k === j || (k >= p && ((k * 7919) % 100) / 100 < frac) ? man.mask_id : x));
      const best = argmaxAt(await forward(ids), j);
      ok += best === seq[j] ? 1 : 0;
      n++;
    }
  }
  console.log(`other response tokens masked: ${frac * 100}%  masked-token accuracy ${(ok / n).toFixed(3)} (n=${n})`);
}
