#!/usr/bin/env node
// Diagnostic: how much does the model use context? For the first 30 rows of a dataset, mask one
// response token at a time (plus a fraction of the other response tokens) and report the argmax
// accuracy of the masked token. A model that uses context is far more accurate at fraction 0.
//   node scripts/probe-masked-accuracy.mjs MODEL_DIR DATASET.jsonl   (after `npm run build`)
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { loadTokenizer } from "../shared/dist/tokenizer/index.js";

const [dir, data] = process.argv.slice(2);
if (!dir || !data) {
  console.error("usage: node scripts/probe-masked-accuracy.mjs MODEL_DIR DATASET.jsonl");
  process.exit(2);
}
const man = JSON.parse(readFileSync(`${dir}/manifest.json`, "utf8"));
const tok = await loadTokenizer(`${dir}/tokenizer.json`);
const sess = await ort.InferenceSession.create(`${dir}/model.onnx`);
const rows = readFileSync(data, "utf8").trim().split("\n").slice(0, 30).map((l) => JSON.parse(l));
const empty = () => new ort.Tensor("float32", new Float32Array(0), [1, man.n_heads, 0, man.head_dim]);
for (const frac of [0, 0.5, 1]) {
  let ok = 0;
  let n = 0;
  for (const r of rows) {
    const p = tok.encode(r.prompt);
    const seq = [...p, ...tok.encode(r.reference), man.eos_id];
    const T = seq.length;
    for (let j = p.length; j < T; j += 3) {
      // A fixed pseudo-random subset of the other response tokens is masked too.
      const ids = seq.map((x, k) => (k === j || (k >= p.length && ((k * 7919) % 100) / 100 < frac) ? man.mask_id : x));
      const feeds = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, T]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from(seq.map((_, k) => BigInt(k))), [1, T]),
        attention_mask: new ort.Tensor("float32", new Float32Array(T).fill(1), [1, T]),
      };
      for (let i = 0; i < man.n_layers; i++) {
        feeds[`past_key_${i}`] = empty();
        feeds[`past_value_${i}`] = empty();
      }
      const logits = (await sess.run(feeds)).logits.data.subarray(j * man.vocab_size, (j + 1) * man.vocab_size);
      let best = 0;
      for (let v = 1; v < man.vocab_size; v++) if (logits[v] > logits[best]) best = v;
      ok += best === seq[j] ? 1 : 0;
      n++;
    }
  }
  console.log(`other response tokens masked: ${frac * 100}%  masked-token accuracy ${(ok / n).toFixed(3)} (n=${n})`);
}
