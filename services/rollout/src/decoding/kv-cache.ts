/**
 * The approximate KV cache of Fast-dLLM decoding, shared by the generation and the infill
 * decoders: one sequence's K/V as a refreshing full forward computed them, and the past tensors
 * a cached forward attends to (the cached positions outside the window it computes).
 */
import type { DenoiserSpec, ForwardInput, ForwardOutput, KvTensors } from "./denoiser.js";

/** One sequence's cached K/V: per layer [Hkv, len, Dh] row-major. */
export interface SeqCache {
  keys: Float32Array[];
  values: Float32Array[];
  /** Positions held (the sequence's length at the refresh). */
  len: number;
}

/**
 * Row `b` of a full forward's present K/V over `T` tokens, its first `len` positions kept. Rows
 * past what the forward computed (a lookahead window shorter than `len`) stay zero: never read.
 */
export function cacheFromPresent(out: ForwardOutput, b: number, T: number, len: number, spec: DenoiserSpec): SeqCache {
  const { nLayers: L, headDim: Dh } = spec;
  const H = spec.nKvHeads ?? spec.nHeads;
  if (!out.present || out.present.keys.length !== L || out.present.values.length !== L) {
    throw new Error(`model returned no present K/V for ${L} layers; it cannot serve a KV cache`);
  }
  const n = Math.min(len, T) * Dh;
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  for (let l = 0; l < L; l++) {
    const k = new Float32Array(H * len * Dh);
    const v = new Float32Array(H * len * Dh);
    for (let h = 0; h < H; h++) {
      const src = (b * H + h) * T * Dh;
      k.set(out.present.keys[l]!.subarray(src, src + n), h * len * Dh);
      v.set(out.present.values[l]!.subarray(src, src + n), h * len * Dh);
    }
    keys.push(k);
    values.push(v);
  }
  return { keys, values, len };
}

/** Empty past tensors for a batch of `B` rows of `P` cached positions each. */
function pastTensors(B: number, P: number, spec: DenoiserSpec): KvTensors {
  const { nLayers: L, headDim: Dh } = spec;
  const H = spec.nKvHeads ?? spec.nHeads;
  return {
    keys: Array.from({ length: L }, () => new Float32Array(B * H * P * Dh)),
    values: Array.from({ length: L }, () => new Float32Array(B * H * P * Dh)),
  };
}

/**
 * Writes the cached positions in `ranges` ([start, end) over the cached sequence, in order) into
 * batch row `b` of `past` (`P` positions per row; a row with fewer is padded, its attention 0).
 */
function writePast(past: KvTensors, b: number, P: number, cache: SeqCache, ranges: ReadonlyArray<readonly [number, number]>, spec: DenoiserSpec): void {
  const { nLayers: L, headDim: Dh } = spec;
  const H = spec.nKvHeads ?? spec.nHeads;
  for (let l = 0; l < L; l++) {
    const srcK = cache.keys[l]!;
    const srcV = cache.values[l]!;
    for (let h = 0; h < H; h++) {
      let dst = (b * H + h) * P * Dh;
      for (const [x, y] of ranges) {
        const src = (h * cache.len + x) * Dh;
        const n = (y - x) * Dh;
        past.keys[l]!.set(srcK.subarray(src, src + n), dst);
        past.values[l]!.set(srcV.subarray(src, src + n), dst);
        dst += n;
      }
    }
  }
}

/** Positions in `ranges` (each [start, end)). */
const rangesLength = (ranges: ReadonlyArray<readonly [number, number]>): number => ranges.reduce((a, [x, y]) => a + (y - x), 0);

/** One row of a cached forward: it computes positions [start, end) of `ids` and attends to its cached K/V at `past`. */
export interface CachedWindow {
  ids: ArrayLike<number>;
  cache: SeqCache;
  start: number;
  end: number;
  past: ReadonlyArray<readonly [number, number]>;
}

/**
 * The input of an uncached forward over whole canvases (positions 0..len−1; shorter rows padded,
 * attention 0); `wantPresent` keeps their K/V.
 */
export function fullForwardInput(rows: ReadonlyArray<ArrayLike<number>>, spec: DenoiserSpec, wantPresent = false): ForwardInput {
  const B = rows.length;
  const T = Math.max(...Array.from(rows, (r) => r.length));
  const ids = new Int32Array(B * T).fill(spec.padId);
  const positions = new Int32Array(B * T);
  const attention = new Float32Array(B * T);
  Array.from(rows).forEach((r, b) => {
    for (let j = 0; j < r.length; j++) {
      ids[b * T + j] = r[j] as number;
      positions[b * T + j] = j;
      attention[b * T + j] = 1;
    }
  });
  return { batch: B, length: T, pastLength: 0, ids, positions, attention, wantPresent };
}

/** The input of a cached forward over `rows` (shorter windows and pasts padded, attention 0). */
export function cachedForwardInput(rows: readonly CachedWindow[], spec: DenoiserSpec): ForwardInput {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.end - r.start));
  const P = Math.max(...rows.map((r) => rangesLength(r.past)));
  const ids = new Int32Array(B * T).fill(spec.padId);
  const positions = new Int32Array(B * T);
  const attention = new Float32Array(B * (P + T));
  const past = pastTensors(B, P, spec);
  rows.forEach((r, b) => {
    for (let t = 0; t < r.end - r.start; t++) {
      ids[b * T + t] = r.ids[r.start + t] as number;
      positions[b * T + t] = r.start + t;
      attention[b * (P + T) + P + t] = 1;
    }
    const n = rangesLength(r.past);
    for (let j = 0; j < n; j++) attention[b * (P + T) + j] = 1;
    writePast(past, b, P, r.cache, r.past, spec);
  });
  return { batch: B, length: T, pastLength: P, ids, positions, attention, past, wantPresent: false };
}
