// Shared by the probe scripts: a validated model directory, its tokenizer, and one uncached full
// forward of a single sequence on onnxruntime.
import ort from "onnxruntime-node";
import { ATTENTION_MASK, INPUT_IDS, LOGITS, loadModel, pastKeyName, pastValueName, POSITION_IDS } from "../shared/dist/model/index.js";
import { loadTokenizer } from "../shared/dist/tokenizer/index.js";

/** Loads DIR (manifest validated against model.onnx and tokenizer.json). */
export async function loadProbeModel(dir) {
  const model = await loadModel(dir);
  const man = model.manifest;
  const tok = await loadTokenizer(model.tokenizerPath);
  const session = await ort.InferenceSession.create(model.modelBytes);
  const int64 = (a) => new ort.Tensor("int64", BigInt64Array.from(a, BigInt), [1, a.length]);
  const empty = () => new ort.Tensor("float32", new Float32Array(0), [1, man.n_heads, 0, man.head_dim]);
  /** Logits [T·V] of the sequence `ids` (every position attended, no cache). */
  const forward = async (ids) => {
    const T = ids.length;
    const feeds = {
      [INPUT_IDS]: int64(ids),
      [POSITION_IDS]: int64(ids.map((_, k) => k)),
      [ATTENTION_MASK]: new ort.Tensor("float32", new Float32Array(T).fill(1), [1, T]),
    };
    for (let i = 0; i < man.n_layers; i++) {
      feeds[pastKeyName(i)] = empty();
      feeds[pastValueName(i)] = empty();
    }
    return (await session.run(feeds))[LOGITS].data;
  };
  /** The most likely token at position j of forward()'s logits. */
  const argmaxAt = (logits, j) => {
    const V = man.vocab_size;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[j * V + v] > logits[j * V + best]) best = v;
    return best;
  };
  return { man, tok, forward, argmaxAt };
}
