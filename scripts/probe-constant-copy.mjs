#!/usr/bin/env node
// Diagnostic: can the model copy the constants of a task from its prompt? For each row, the
// reference response is given with only its number tokens masked, and one full forward predicts
// them (argmax). Prints the accuracy per constant slot (slot 0 = the first number in the response)
// and per number token. A model that copies is far above the share of the most common constant.
//   node scripts/probe-constant-copy.mjs MODEL_DIR DATASET.jsonl [ROWS]   (after `npm run build`)
import { isNumberToken, sftExamplesFromRows } from "../services/learner/dist/sft/train-base-data.js";
import { readEvalRows } from "../services/learner/dist/sft/train-base-eval.js";
import { loadProbeModel } from "./probe-model.mjs";

const [dir, data, limitArg] = process.argv.slice(2);
if (!dir || !data) {
  console.error("usage: node scripts/probe-constant-copy.mjs MODEL_DIR DATASET.jsonl [ROWS]");
  process.exit(2);
}
const { man, tok, forward, argmaxAt } = await loadProbeModel(dir);
const rows = await readEvalRows(data, Number(limitArg ?? 200));
const isNumber = (id) => isNumberToken(tok.decode([id]));
const byToken = new Map();
const bump = (m, k, ok) => {
  const t = m.get(k) ?? [0, 0];
  t[0] += ok ? 1 : 0;
  t[1] += 1;
  m.set(k, t);
};
const slotMap = new Map();
for (const { promptIds, responseIds } of sftExamplesFromRows(rows, tok, man.eos_id)) {
  const seq = [...promptIds, ...responseIds];
  const ids = seq.map((x, k) => (k >= promptIds.length && isNumber(x) ? man.mask_id : x));
  const logits = await forward(ids);
  let slot = 0;
  for (let j = promptIds.length; j < seq.length; j++) {
    if (ids[j] !== man.mask_id) continue;
    const ok = argmaxAt(logits, j) === seq[j];
    bump(slotMap, slot++, ok);
    bump(byToken, JSON.stringify(tok.decode([seq[j]])), ok);
  }
}
console.log(`constant-copy accuracy, ${rows.length} rows of ${data}`);
console.log([...slotMap].map(([k, [a, n]]) => `slot ${k}: ${(a / n).toFixed(2)} (n=${n})`).join("  "));
console.log(
  [...byToken]
    .sort((x, y) => y[1][1] - x[1][1])
    .map(([k, [a, n]]) => `${k} ${(a / n).toFixed(2)}/${n}`)
    .join("  "),
);
