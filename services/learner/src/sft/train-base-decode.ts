import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-node";

import type { ModelManifest } from "@rlmesh/shared/model/index";
import { layerName } from "@rlmesh/shared/model/index";
import { DEFAULT_BLOCK_LENGTH } from "@rlmesh/shared/decoding-defaults";

/**
 * A minimal uncached greedy diffusion decoder, only for measuring the base model during
 * train-base (the rollout service owns the real, cached, sampled decoders). Every response
 * position starts as MASK; each step runs a full forward, commits the most confident masked
 * position plus every one whose top probability is ≥ threshold; once EOS is committed, all
 * later positions become PAD.
 */

export interface GreedyDecodeOptions {
  responseLength: number;
  /** Commit every masked position whose top probability is at least this. @defaultValue 0.9 */
  threshold: number;
  /**
   * Semi-autoregressive blocks (Fast-dLLM): only the leftmost block that still has masks is
   * decoded. @defaultValue DEFAULT_BLOCK_LENGTH; responseLength = one block (pure diffusion order).
   */
  blockLength?: number;
}


export const DEFAULT_COMMIT_THRESHOLD = 0.9;

type OrtModule = typeof import("onnxruntime-node");

/** Response token ids per prompt (up to, not including, EOS). */
export async function greedyDiffusionDecode(
  ort: OrtModule,
  session: InferenceSession,
  manifest: ModelManifest,
  prompts: readonly number[][],
  opts: GreedyDecodeOptions,
): Promise<number[][]> {
  const { mask_id: MASK, pad_id: PAD, eos_id: EOS, vocab_size: V } = manifest;
  const B = prompts.length;
  const R = opts.responseLength;
  const T = Math.max(...prompts.map((p) => p.length)) + R;
  const ids = new BigInt64Array(B * T).fill(BigInt(PAD));
  const pos = new BigInt64Array(B * T);
  const attn = new Float32Array(B * T);
  const start = prompts.map((p) => p.length);
  prompts.forEach((p, b) => {
    for (let j = 0; j < p.length + R; j++) {
      const k = b * T + j;
      pos[k] = BigInt(j);
      attn[k] = 1;
      ids[k] = BigInt(j < p.length ? p[j]! : MASK);
    }
  });
  const hasPast = manifest.inputs.past_key !== undefined && session.inputNames.includes(layerName(manifest.inputs.past_key, 0));
  const emptyKv = new ort.Tensor("float32", new Float32Array(0), [B, manifest.n_heads, 0, manifest.head_dim]);
  const done = new Array<boolean>(B).fill(false);
  for (let step = 0; step < R && done.some((d) => !d); step++) {
    const feeds: Record<string, OrtTensor> = {
      [manifest.inputs.input_ids]: new ort.Tensor("int64", ids, [B, T]),
      [manifest.inputs.position_ids]: new ort.Tensor("int64", pos, [B, T]),
      [manifest.inputs.attention_mask]: new ort.Tensor("float32", attn, [B, T]),
    };
    if (hasPast) {
      for (let i = 0; i < manifest.n_layers; i++) {
        feeds[layerName(manifest.inputs.past_key!, i)] = emptyKv;
        feeds[layerName(manifest.inputs.past_value!, i)] = emptyKv;
      }
    }
    const out = await session.run(feeds, [manifest.outputs.logits]);
    const logits = out[manifest.outputs.logits]!.data as Float32Array;
    for (let b = 0; b < B; b++) {
      if (done[b]) continue;
      const cands: { j: number; tok: number; p: number }[] = [];
      let first = -1;
      for (let j = start[b]!; j < start[b]! + R && first < 0; j++) if (ids[b * T + j] === BigInt(MASK)) first = j - start[b]!;
      const block = opts.blockLength ?? DEFAULT_BLOCK_LENGTH;
      const blockEnd = first < 0 ? 0 : start[b]! + Math.min(R, (Math.floor(first / block) + 1) * block);
      for (let j = start[b]!; j < blockEnd; j++) {
        if (ids[b * T + j] !== BigInt(MASK)) continue;
        const [tok, p] = topToken(logits, (b * T + j) * V, V, MASK);
        cands.push({ j, tok, p });
      }
      if (cands.length === 0) {
        done[b] = true;
        continue;
      }
      cands.sort((x, y) => y.p - x.p);
      const commit = cands.filter((c, i) => i === 0 || c.p >= opts.threshold);
      for (const c of commit) ids[b * T + c.j] = BigInt(c.tok);
      for (const c of commit) {
        if (c.tok !== EOS) continue;
        for (let j = c.j + 1; j < start[b]! + R; j++) ids[b * T + j] = BigInt(PAD);
      }
    }
  }
  return prompts.map((p, b) => {
    const resp: number[] = [];
    for (let j = p.length; j < p.length + R; j++) {
      const tok = Number(ids[b * T + j]);
      if (tok === EOS) break;
      if (tok !== PAD && tok !== MASK) resp.push(tok);
    }
    return resp;
  });
}

/** Argmax over one position's logits (excluding `exclude`) and its softmax probability. */
function topToken(logits: Float32Array, offset: number, V: number, exclude: number): [number, number] {
  let best = -1;
  let bestLogit = -Infinity;
  let max = -Infinity;
  for (let v = 0; v < V; v++) {
    const l = logits[offset + v]!;
    if (l > max) max = l;
    if (v !== exclude && l > bestLogit) {
      bestLogit = l;
      best = v;
    }
  }
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[offset + v]! - max);
  return [best, Math.exp(bestLogit - max) / z];
}
