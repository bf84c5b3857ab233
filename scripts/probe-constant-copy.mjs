#!/usr/bin/env node
// Diagnostic: can the model copy the constants of a task from its prompt? For each row, the
// reference response is given with only its number tokens masked, and one full forward predicts
// them (argmax). Prints the accuracy per constant slot (slot 0 = the first number in the response)
// and per number token. A model that copies is far above the share of the most common constant.
//   node scripts/probe-constant-copy.mjs MODEL_DIR DATASET.jsonl [ROWS]   (after `npm run build`)
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { loadTokenizer } from "../shared/dist/tokenizer/index.js";

const [dir, data, limitArg] = process.argv.slice(2);
if (!dir || !data) {
  console.error("usage: node scripts/probe-constant-copy.mjs MODEL_DIR DATASET.jsonl [ROWS]");
  process.exit(2);
}
const limit = Number(limitArg ?? 200);
const man = JSON.parse(readFileSync(`${dir}/manifest.json`, "utf8"));
const tok = await loadTokenizer(`${dir}/tokenizer.json`);
const session = await ort.InferenceSession.create(`${dir}/model.onnx`);
const rows = readFileSync(data, "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "")
  .slice(0, limit)
  .map((l) => JSON.parse(l));
const isNumber = (id) => /^ ?\p{N}+$/u.test(tok.decode([id]));
const V = man.vocab_size;
const bySlot = [];
const byToken = new Map();
const bump = (m, k, ok) => {
  const t = m.get(k) ?? [0, 0];
  t[0] += ok ? 1 : 0;
  t[1] += 1;
  m.set(k, t);
};
const slotMap = new Map();
for (const row of rows) {
  if (typeof row.prompt !== "string" || typeof row.reference !== "string") continue;
  const prompt = tok.encode(row.prompt);
  const seq = [...prompt, ...tok.encode(row.reference), man.eos_id];
  const T = seq.length;
  const ids = seq.map((x, k) => (k >= prompt.length && isNumber(x) ? man.mask_id : x));
  const int64 = (a) => new ort.Tensor("int64", BigInt64Array.from(a.map(BigInt)), [1, T]);
  const feeds = {
    [man.inputs.input_ids]: int64(ids),
    [man.inputs.position_ids]: int64(ids.map((_, k) => k)),
    [man.inputs.attention_mask]: new ort.Tensor("float32", new Float32Array(T).fill(1), [1, T]),
  };
  for (let i = 0; i < man.n_layers; i++) {
    const empty = () => new ort.Tensor("float32", new Float32Array(0), [1, man.n_heads, 0, man.head_dim]);
    feeds[man.inputs.past_key.replace("{i}", i)] = empty();
    feeds[man.inputs.past_value.replace("{i}", i)] = empty();
  }
  const logits = (await session.run(feeds))[man.outputs.logits].data;
  let slot = 0;
  for (let j = prompt.length; j < T; j++) {
    if (ids[j] !== man.mask_id) continue;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[j * V + v] > logits[j * V + best]) best = v;
    const ok = best === seq[j];
    bump(slotMap, slot++, ok);
    bump(byToken, JSON.stringify(tok.decode([seq[j]])), ok);
  }
}
for (const [k, [a, n]] of [...slotMap].sort((x, y) => x[0] - y[0])) bySlot.push(`slot ${k}: ${(a / n).toFixed(2)} (n=${n})`);
console.log(`constant-copy accuracy, ${rows.length} rows of ${data}`);
console.log(bySlot.join("  "));
console.log(
  [...byToken]
    .sort((x, y) => y[1][1] - x[1][1])
    .map(([k, [a, n]]) => `${k} ${(a / n).toFixed(2)}/${n}`)
    .join("  "),
);
