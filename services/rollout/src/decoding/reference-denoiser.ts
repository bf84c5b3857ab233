/**
 * A small bidirectional transformer in plain TypeScript that follows the model I/O contract
 * exactly (explicit positions, key mask over past+current, present K/V of current tokens).
 * Random weights from a seed. It is the fake at the Denoiser seam for decoder tests: real
 * attention, so a wrong cache layout changes its logits.
 */
import { counterUniform } from "./counter-rng.js";
import type { Denoiser, DenoiserSpec, ForwardInput, ForwardOutput } from "./denoiser.js";

const LN_EPS = 1e-5;

interface Layer {
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
}

function randn(seed: number, tensor: number, i: number): number {
  const u1 = counterUniform(seed, tensor, i, 0);
  const u2 = counterUniform(seed, tensor, i, 1);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

function weights(seed: number, tensor: number, n: number, scale: number): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = randn(seed, tensor, i) * scale;
  return w;
}

/** y[n] = x[d] · W[d, n] */
function matvec(x: Float32Array, w: Float32Array, d: number, n: number, y: Float32Array): void {
  y.fill(0);
  for (let i = 0; i < d; i++) {
    const xi = x[i] as number;
    if (xi === 0) continue;
    const row = i * n;
    for (let j = 0; j < n; j++) y[j] = (y[j] as number) + xi * (w[row + j] as number);
  }
}

function layerNorm(x: Float32Array, out: Float32Array): void {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let varSum = 0;
  for (const v of x) varSum += (v - mean) * (v - mean);
  const inv = 1 / Math.sqrt(varSum / x.length + LN_EPS);
  for (let i = 0; i < x.length; i++) out[i] = ((x[i] as number) - mean) * inv;
}

export function createReferenceDenoiser(spec: DenoiserSpec, seed = 1, logitScale = 3): Denoiser {
  const { vocabSize: V, nLayers, nHeads: H, headDim: Dh, maxSeqLen } = spec;
  const d = H * Dh;
  const f = 2 * d;
  const tokEmb = weights(seed, 1, V * d, 1);
  const posEmb = weights(seed, 2, maxSeqLen * d, 1.5);
  const layers: Layer[] = Array.from({ length: nLayers }, (_, l) => ({
    wq: weights(seed, 10 + l * 10, d * d, 1 / Math.sqrt(d)),
    wk: weights(seed, 11 + l * 10, d * d, 1 / Math.sqrt(d)),
    wv: weights(seed, 12 + l * 10, d * d, 1 / Math.sqrt(d)),
    wo: weights(seed, 13 + l * 10, d * d, 1 / Math.sqrt(d)),
    w1: weights(seed, 14 + l * 10, d * f, 1 / Math.sqrt(d)),
    w2: weights(seed, 15 + l * 10, f * d, 1 / Math.sqrt(f)),
  }));
  const wOut = weights(seed, 5, d * V, logitScale / Math.sqrt(d));

  async function forward(input: ForwardInput): Promise<ForwardOutput> {
    const { batch: B, length: T, pastLength: P } = input;
    const logits = new Float32Array(B * T * V);
    const presentK = Array.from({ length: nLayers }, () => new Float32Array(B * H * T * Dh));
    const presentV = Array.from({ length: nLayers }, () => new Float32Array(B * H * T * Dh));
    const tmp = new Float32Array(d);
    const q = new Float32Array(d);
    const kk = new Float32Array(d);
    const vv = new Float32Array(d);
    const hid = new Float32Array(f);
    const o = new Float32Array(d);
    for (let b = 0; b < B; b++) {
      const xs = Array.from({ length: T }, (_, t) => {
        const x = new Float32Array(d);
        const tok = input.ids[b * T + t] as number;
        const pos = input.positions[b * T + t] as number;
        for (let i = 0; i < d; i++) x[i] = (tokEmb[tok * d + i] as number) + (posEmb[pos * d + i] as number);
        return x;
      });
      const mask = input.attention.subarray(b * (P + T), (b + 1) * (P + T));
      layers.forEach((w, l) => {
        const qs: Float32Array[] = [];
        for (let t = 0; t < T; t++) {
          layerNorm(xs[t]!, tmp);
          matvec(tmp, w.wq, d, d, q);
          matvec(tmp, w.wk, d, d, kk);
          matvec(tmp, w.wv, d, d, vv);
          qs.push(q.slice());
          for (let h = 0; h < H; h++)
            for (let e = 0; e < Dh; e++) {
              presentK[l]![((b * H + h) * T + t) * Dh + e] = kk[h * Dh + e] as number;
              presentV[l]![((b * H + h) * T + t) * Dh + e] = vv[h * Dh + e] as number;
            }
        }
        const key = (h: number, j: number, e: number): number =>
          j < P
            ? (input.past!.keys[l]![((b * H + h) * P + j) * Dh + e] as number)
            : (presentK[l]![((b * H + h) * T + (j - P)) * Dh + e] as number);
        const val = (h: number, j: number, e: number): number =>
          j < P
            ? (input.past!.values[l]![((b * H + h) * P + j) * Dh + e] as number)
            : (presentV[l]![((b * H + h) * T + (j - P)) * Dh + e] as number);
        const outs: Float32Array[] = [];
        for (let t = 0; t < T; t++) {
          const att = new Float32Array(d);
          for (let h = 0; h < H; h++) {
            const scores: number[] = [];
            let max = -Infinity;
            for (let j = 0; j < P + T; j++) {
              if (mask[j] === 0) {
                scores.push(-Infinity);
                continue;
              }
              let s = 0;
              for (let e = 0; e < Dh; e++) s += (qs[t]![h * Dh + e] as number) * key(h, j, e);
              s /= Math.sqrt(Dh);
              scores.push(s);
              if (s > max) max = s;
            }
            let z = 0;
            const ps = scores.map((s) => (s === -Infinity ? 0 : Math.exp(s - max)));
            for (const p of ps) z += p;
            for (let j = 0; j < P + T; j++) {
              const p = (ps[j] as number) / z;
              if (p === 0) continue;
              for (let e = 0; e < Dh; e++) att[h * Dh + e] = (att[h * Dh + e] as number) + p * val(h, j, e);
            }
          }
          matvec(att, w.wo, d, d, o);
          outs.push(o.slice());
        }
        for (let t = 0; t < T; t++) {
          const x = xs[t]!;
          for (let i = 0; i < d; i++) x[i] = (x[i] as number) + (outs[t]![i] as number);
          layerNorm(x, tmp);
          matvec(tmp, w.w1, d, f, hid);
          for (let i = 0; i < f; i++) hid[i] = Math.max(0, hid[i] as number);
          matvec(hid, w.w2, f, d, o);
          for (let i = 0; i < d; i++) x[i] = (x[i] as number) + (o[i] as number);
        }
      });
      const lo = new Float32Array(V);
      for (let t = 0; t < T; t++) {
        layerNorm(xs[t]!, tmp);
        matvec(tmp, wOut, d, V, lo);
        logits.set(lo, (b * T + t) * V);
      }
    }
    return { logits, present: input.wantPresent ? { keys: presentK, values: presentV } : undefined };
  }

  return { spec, forward };
}
