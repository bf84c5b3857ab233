/**
 * IEEE 754 half precision (ONNX FLOAT16) ↔ float32, in bulk: the storage of
 * `import-hf --dtype float16` models (weights as float16 initializers, a Cast to float32 in the
 * graph). Node 20 has no Float16Array, so the bits travel as Uint16Array.
 */

/** float16 bits → float32 for every one of the 65536 patterns (256 KB, built on first use). */
let halfTable: Float32Array | null = null;

function table(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 0x1f) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

/** float32 values of float16 bits (exact: every float16 is a float32). */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const t = table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]!]!;
  return out;
}

/** Largest finite float16 (values at or past 65520 round to infinity). */
export const FLOAT16_MAX = 65504;

/**
 * float16 bits of float32 values, rounded to nearest even (subnormals kept, overflow to ±∞, NaN
 * kept NaN). The caller decides what an overflow means: `firstNonFiniteHalf` finds one.
 */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < u32.length; i++) {
    const x = u32[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 112; // exp - 127 + 15
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: correct, up to ∞
    out[i] = sign | half;
  }
  return out;
}

/** Index of the first ±∞ or NaN among float16 bits, or -1. */
export function firstNonFiniteHalf(bits: Uint16Array): number {
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7c00) === 0x7c00) return i;
  return -1;
}
