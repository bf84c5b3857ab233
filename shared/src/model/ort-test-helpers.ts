import ort from "onnxruntime-node";

import type { PolicyModelConfig } from "./model-config.js";
import { headDim, kvHeads } from "./model-config.js";
import { pastKeyName, pastValueName, presentKeyName, presentValueName } from "./model-io-names.js";

/** Test-only helpers: run one forward of a graph-builder model in onnxruntime-node. */

export const TEST_CONFIG: PolicyModelConfig = { vocabSize: 37, dModel: 16, nLayers: 2, nHeads: 2, ffDim: 24, maxSeqLen: 24, normEps: 1e-5 };

export interface KvTensor {
  /** [B, H, S, Dh] row-major. */
  data: Float32Array;
  seq: number;
}

export interface ForwardOut {
  logits: Float32Array;
  keys: KvTensor[];
  values: KvTensor[];
}

export async function ortSession(bytes: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
}

/** One forward; `past` holds per-layer K/V with `past.seq` positions (0 = full forward). */
export async function ortForward(
  session: ort.InferenceSession,
  cfg: PolicyModelConfig,
  batch: number,
  ids: number[],
  positions: number[],
  mask: number[],
  past?: { keys: KvTensor[]; values: KvTensor[] },
): Promise<ForwardOut> {
  const T = ids.length / batch;
  const H = kvHeads(cfg);
  const Dh = headDim(cfg);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (v) => BigInt(v)),
      [batch, T],
    ),
    position_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from(positions, (v) => BigInt(v)),
      [batch, T],
    ),
    attention_mask: new ort.Tensor("float32", Float32Array.from(mask), [batch, mask.length / batch]),
  };
  for (let i = 0; i < cfg.nLayers; i++) {
    const k = past?.keys[i] ?? { data: new Float32Array(0), seq: 0 };
    const v = past?.values[i] ?? { data: new Float32Array(0), seq: 0 };
    feeds[pastKeyName(i)] = new ort.Tensor("float32", k.data, [batch, H, k.seq, Dh]);
    feeds[pastValueName(i)] = new ort.Tensor("float32", v.data, [batch, H, v.seq, Dh]);
  }
  const out = await session.run(feeds);
  const keys: KvTensor[] = [];
  const values: KvTensor[] = [];
  for (let i = 0; i < cfg.nLayers; i++) {
    keys.push({ data: out[presentKeyName(i)]!.data as Float32Array, seq: T });
    values.push({ data: out[presentValueName(i)]!.data as Float32Array, seq: T });
  }
  return { logits: out["logits"]!.data as Float32Array, keys, values };
}

/** Positions `keep` (in order) of a [B, H, S, Dh] K/V tensor. */
export function selectPositions(kv: KvTensor, batch: number, heads: number, dh: number, keep: number[]): KvTensor {
  const out = new Float32Array(batch * heads * keep.length * dh);
  let o = 0;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (const s of keep) {
        const base = ((b * heads + h) * kv.seq + s) * dh;
        out.set(kv.data.subarray(base, base + dh), o);
        o += dh;
      }
    }
  }
  return { data: out, seq: keep.length };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Rows [from, to) of a [B, T, V] logits tensor for batch row b. */
export function logitRows(logits: Float32Array, T: number, V: number, b: number, from: number, to: number): Float32Array {
  return logits.slice((b * T + from) * V, (b * T + to) * V);
}
