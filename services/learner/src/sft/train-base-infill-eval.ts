import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-node";

import type { InfillRow } from "@rlmesh/shared/infill/index";
import { infillProgram } from "@rlmesh/shared/infill/index";
import type { ModelManifest } from "@rlmesh/shared/model/index";
import { layerName } from "@rlmesh/shared/model/index";

import { passesTests } from "./train-base-check.js";

/**
 * A minimal uncached greedy infill decoder, only for measuring a model while train-base trains it
 * (the rollout service owns the real decoders; services do not import each other). Sequence =
 * prefix, middle canvas, suffix (infillPassAt1 ends it with EOS, as the rollout does). Each step runs a full forward and commits ONE masked middle
 * position, the one whose distribution has the lowest entropy (DreamOn's order), to its argmax:
 *
 * - fixed length: the canvas is `initial` masks and only ordinary tokens may be committed;
 * - variable length (DreamOn): `<|expand|>` committed → two masks in its place (not offered
 *   once the canvas holds `maxLength` positions); EOS committed → it and every position to its
 *   right are deleted (EOS plays delete; the suffix moves left).
 *
 * Batch rows have their own canvas lengths (padding keys get attention 0).
 */
export interface InfillDecodeOptions {
  variable: boolean;
  /** Masks the canvas starts with, per row (fixed: the exact length). */
  initial: readonly number[];
  /** Largest canvas in variable mode. @defaultValue 64 */
  maxLength?: number;
}

type OrtModule = typeof import("onnxruntime-node");

interface Canvas {
  prefix: number[];
  middle: number[];
  suffix: number[];
  done: boolean;
  nfe: number;
}

export interface InfillDecodeResult {
  middleIds: number[];
  nfe: number;
}

export async function greedyInfillDecode(
  ort: OrtModule,
  session: InferenceSession,
  manifest: ModelManifest,
  items: readonly { prefixIds: number[]; suffixIds: number[] }[],
  opts: InfillDecodeOptions,
): Promise<InfillDecodeResult[]> {
  const { mask_id: MASK, pad_id: PAD, eos_id: EOS, vocab_size: V } = manifest;
  const EXPAND = manifest.expand_id;
  if (opts.variable && EXPAND === undefined) throw new Error("greedyInfillDecode: variable length needs a model with expand_id");
  const maxLength = opts.maxLength ?? 64;
  const special = new Set([MASK, PAD, EOS, ...(EXPAND !== undefined ? [EXPAND] : []), ...(manifest.delete_id !== undefined ? [manifest.delete_id] : [])]);
  const canvases: Canvas[] = items.map((it, b) => ({
    prefix: it.prefixIds,
    middle: new Array<number>(opts.initial[b]!).fill(MASK),
    suffix: it.suffixIds,
    done: opts.initial[b] === 0,
    nfe: 0,
  }));
  const hasPast = manifest.inputs.past_key !== undefined && session.inputNames.includes(layerName(manifest.inputs.past_key, 0));
  const B = canvases.length;
  const emptyKv = new ort.Tensor("float32", new Float32Array(0), [B, manifest.n_heads, 0, manifest.head_dim]);
  for (let guard = 0; guard < 4 * maxLength + 8 && canvases.some((c) => !c.done); guard++) {
    const T = Math.max(...canvases.map((c) => c.prefix.length + c.middle.length + c.suffix.length));
    const ids = new BigInt64Array(B * T).fill(BigInt(PAD));
    const pos = new BigInt64Array(B * T);
    const attn = new Float32Array(B * T);
    canvases.forEach((c, b) => {
      const seq = [...c.prefix, ...c.middle, ...c.suffix];
      for (let j = 0; j < T; j++) {
        pos[b * T + j] = BigInt(j);
        if (j < seq.length) {
          ids[b * T + j] = BigInt(seq[j]!);
          attn[b * T + j] = 1;
        }
      }
    });
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
    const logits = (await session.run(feeds, [manifest.outputs.logits]))[manifest.outputs.logits]!.data as Float32Array;
    canvases.forEach((c, b) => {
      if (c.done) return;
      c.nfe++;
      const allowed = (v: number) =>
        opts.variable ? v !== MASK && v !== PAD && (v !== EXPAND || c.middle.length < maxLength) && v !== manifest.delete_id : !special.has(v);
      let best = { j: -1, tok: -1, h: Infinity };
      c.middle.forEach((tok, j) => {
        if (tok !== MASK) return;
        const [top, h] = argmaxEntropy(logits, (b * T + c.prefix.length + j) * V, V, allowed);
        if (h < best.h) best = { j, tok: top, h };
      });
      if (best.j < 0) {
        c.done = true;
        return;
      }
      if (opts.variable && best.tok === EXPAND) c.middle.splice(best.j, 1, MASK, MASK);
      else if (opts.variable && best.tok === EOS) c.middle.splice(best.j);
      else c.middle[best.j] = best.tok;
      if (!c.middle.includes(MASK)) c.done = true;
    });
  }
  return canvases.map((c) => ({ middleIds: c.middle.filter((t) => t !== MASK && t !== EOS), nfe: c.nfe }));
}

/** Argmax over the allowed ids and the entropy of the softmax restricted to them. */
function argmaxEntropy(logits: Float32Array, offset: number, V: number, allowed: (v: number) => boolean): [number, number] {
  let best = -1;
  let max = -Infinity;
  for (let v = 0; v < V; v++) {
    if (!allowed(v)) continue;
    const l = logits[offset + v]!;
    if (l > max) {
      max = l;
      best = v;
    }
  }
  let z = 0;
  let s = 0;
  for (let v = 0; v < V; v++) {
    if (!allowed(v)) continue;
    const d = logits[offset + v]! - max;
    const e = Math.exp(d);
    z += e;
    s += e * d;
  }
  return [best, Math.log(z) - s / z];
}

interface Tok {
  encode(text: string): number[];
  decode(ids: readonly number[], o?: { skipSpecial?: boolean }): string;
}

export interface InfillPassResult {
  mode: string;
  n: number;
  passed: number;
  passAt1: number;
  /** Mean |generated − true| middle length in tokens. */
  meanLengthError: number;
  nfePerToken: number;
  seconds: number;
  samples: { task_id: string; middle: string; pass: boolean }[];
}

export type InfillEvalMode = "oracle" | "variable_from_4" | "variable_from_32";

/** Greedy infill pass@1 of a model on infilling rows for one mode, checked with python3 (not the sandbox). */
export async function infillPassAt1(
  modelBytes: Uint8Array,
  manifest: ModelManifest,
  tokenizer: Tok,
  rows: readonly InfillRow[],
  mode: InfillEvalMode,
  batchSize = 50,
): Promise<InfillPassResult> {
  const t0 = performance.now();
  const ort = await import("onnxruntime-node");
  const session = await ort.InferenceSession.create(modelBytes, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const middles: number[][] = [];
  let nfe = 0;
  try {
    for (let i = 0; i < rows.length; i += batchSize) {
      const chunk = rows.slice(i, i + batchSize);
      // The canvas ends with EOS after the suffix, as in training and in the rollout's infill.
      const items = chunk.map((r) => ({ prefixIds: tokenizer.encode(r.prefix), suffixIds: [...tokenizer.encode(r.suffix), manifest.eos_id] }));
      const initial = chunk.map((r) => (mode === "oracle" ? tokenizer.encode(r.middle).length : mode === "variable_from_4" ? 4 : 32));
      const out = await greedyInfillDecode(ort, session, manifest, items, { variable: mode !== "oracle", initial });
      for (const o of out) {
        middles.push(o.middleIds);
        nfe += o.nfe;
      }
    }
  } finally {
    await session.release();
  }
  const texts = middles.map((ids) => tokenizer.decode(ids, { skipSpecial: true }));
  const pass = new Array<boolean>(rows.length).fill(false);
  let next = 0;
  await Promise.all(
    Array.from({ length: 2 }, async () => {
      while (next < rows.length) {
        const i = next++;
        pass[i] = await passesTests(rows[i]!, infillProgram(rows[i]!, texts[i]!));
      }
    }),
  );
  const passed = pass.filter(Boolean).length;
  const lenErr = rows.reduce((s, r, i) => s + Math.abs(middles[i]!.length - tokenizer.encode(r.middle).length), 0);
  const tokens = middles.reduce((s, m) => s + m.length, 0);
  return {
    mode,
    n: rows.length,
    passed,
    passAt1: rows.length ? passed / rows.length : 0,
    meanLengthError: rows.length ? lenErr / rows.length : 0,
    nfePerToken: tokens ? nfe / tokens : 0,
    seconds: (performance.now() - t0) / 1000,
    samples: rows.slice(0, 3).map((r, i) => ({ task_id: r.task_id, middle: texts[i]!, pass: pass[i]! })),
  };
}
