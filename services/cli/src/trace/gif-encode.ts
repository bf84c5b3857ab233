/**
 * A small animated-GIF writer for trace replays: one 256-colour palette for all frames (the most
 * frequent colours at 15-bit precision; the page has few: white, greys, text, the step colours),
 * each later frame stored as the rectangle that changed (disposal: keep), LZW as in GIF89a,
 * looping forever.
 */
import type { RgbaImage } from "./png-decode.js";

export interface GifFrame {
  image: RgbaImage;
  /** How long the frame shows, in milliseconds (GIF stores hundredths of a second). */
  delayMs: number;
}

const bin15 = (r: number, g: number, b: number) => ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
/** A 5-bit channel back to 8 bits (0 -> 0, 31 -> 255). */
const widen = (v: number) => (v << 3) | (v >> 2);

/** The palette (up to 256 RGB colours) and, per 15-bit colour, its nearest palette index. */
function buildPalette(frames: readonly GifFrame[]): { palette: Uint8Array; lookup: (bin: number) => number } {
  const counts = new Uint32Array(1 << 15);
  for (const { image } of frames) {
    const d = image.data;
    for (let i = 0; i < d.length; i += 4) counts[bin15(d[i]!, d[i + 1]!, d[i + 2]!)]!++;
  }
  const bins = [...counts.keys()].filter((k) => counts[k]! > 0).sort((a, b) => counts[b]! - counts[a]!).slice(0, 256);
  const palette = new Uint8Array(256 * 3);
  bins.forEach((k, i) => {
    palette[i * 3] = widen((k >> 10) & 31);
    palette[i * 3 + 1] = widen((k >> 5) & 31);
    palette[i * 3 + 2] = widen(k & 31);
  });
  const cache = new Int16Array(1 << 15).fill(-1);
  const lookup = (bin: number): number => {
    const hit = cache[bin]!;
    if (hit >= 0) return hit;
    const r = widen((bin >> 10) & 31);
    const g = widen((bin >> 5) & 31);
    const b = widen(bin & 31);
    let best = 0;
    let bestD = Infinity;
    for (let i = 0; i < bins.length; i++) {
      const dr = palette[i * 3]! - r;
      const dg = palette[i * 3 + 1]! - g;
      const db = palette[i * 3 + 2]! - b;
      const dist = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
      if (dist < bestD) {
        bestD = dist;
        best = i;
      }
    }
    cache[bin] = best;
    return best;
  };
  return { palette, lookup };
}

/** GIF LZW of palette indices (minimum code size 8), as data sub-blocks. */
export function lzwSubBlocks(indices: Uint8Array): Uint8Array {
  const minCodeSize = 8;
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  let codeSize = minCodeSize + 1;
  let next = eoi + 1;
  const dict = new Map<number, number>();
  const bytes: number[] = [];
  let acc = 0;
  let nbits = 0;
  const emit = (code: number) => {
    acc |= code << nbits;
    nbits += codeSize;
    while (nbits >= 8) {
      bytes.push(acc & 255);
      acc >>>= 8;
      nbits -= 8;
    }
  };
  emit(clear);
  if (indices.length > 0) {
    let prefix = indices[0]!;
    for (let i = 1; i < indices.length; i++) {
      const k = indices[i]!;
      const key = prefix * 256 + k;
      const found = dict.get(key);
      if (found !== undefined) {
        prefix = found;
        continue;
      }
      emit(prefix);
      if (next === 4096) {
        emit(clear);
        dict.clear();
        codeSize = minCodeSize + 1;
        next = eoi + 1;
      } else {
        if (next >= 1 << codeSize) codeSize++;
        dict.set(key, next++);
      }
      prefix = k;
    }
    emit(prefix);
  }
  emit(eoi);
  if (nbits > 0) bytes.push(acc & 255);
  const out: number[] = [minCodeSize];
  for (let i = 0; i < bytes.length; i += 255) {
    const n = Math.min(255, bytes.length - i);
    out.push(n, ...bytes.slice(i, i + n));
  }
  out.push(0);
  return Uint8Array.from(out);
}

const u16 = (n: number) => [n & 255, (n >> 8) & 255];

/** An animated GIF of `frames` (all the same size), looping forever. */
export function encodeGif(frames: readonly GifFrame[]): Uint8Array {
  if (frames.length === 0) throw new Error("encodeGif: no frames");
  const { width, height } = frames[0]!.image;
  for (const [i, f] of frames.entries()) {
    if (f.image.width !== width || f.image.height !== height) throw new Error(`encodeGif: frame ${i} is ${f.image.width}x${f.image.height}, not ${width}x${height}`);
  }
  const { palette, lookup } = buildPalette(frames);
  const parts: Uint8Array[] = [
    Uint8Array.from([...Buffer.from("GIF89a"), ...u16(width), ...u16(height), 0xf7, 0, 0]),
    palette,
    // Loop forever (NETSCAPE2.0 application extension).
    Uint8Array.from([0x21, 0xff, 0x0b, ...Buffer.from("NETSCAPE2.0"), 0x03, 0x01, 0, 0, 0]),
  ];
  let prev: Uint8Array | null = null;
  let pending: { rect: [number, number, number, number]; idx: Uint8Array; delayMs: number } | null = null;
  const flush = () => {
    if (!pending) return;
    const [x0, y0, w, h] = pending.rect;
    const cs = Math.max(1, Math.round(pending.delayMs / 10));
    parts.push(Uint8Array.from([0x21, 0xf9, 0x04, 0x04, ...u16(cs), 0, 0]));
    parts.push(Uint8Array.from([0x2c, ...u16(x0), ...u16(y0), ...u16(w), ...u16(h), 0]));
    const sub = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) sub.set(pending.idx.subarray((y0 + y) * width + x0, (y0 + y) * width + x0 + w), y * w);
    parts.push(lzwSubBlocks(sub));
    pending = null;
  };
  for (const f of frames) {
    const d = f.image.data;
    const idx = new Uint8Array(width * height);
    for (let p = 0, i = 0; p < idx.length; p++, i += 4) idx[p] = lookup(bin15(d[i]!, d[i + 1]!, d[i + 2]!));
    let rect: [number, number, number, number] = [0, 0, width, height];
    if (prev) {
      let minX = width;
      let minY = height;
      let maxX = -1;
      let maxY = -1;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          if (idx[y * width + x] !== prev[y * width + x]) {
            if (x < minX) minX = x;
            if (x > maxX) maxX = x;
            if (y < minY) minY = y;
            if (y > maxY) maxY = y;
          }
        }
      }
      if (maxX < 0) {
        // Nothing changed: the previous frame just shows longer.
        if (pending) pending.delayMs += f.delayMs;
        continue;
      }
      rect = [minX, minY, maxX - minX + 1, maxY - minY + 1];
    }
    flush();
    pending = { rect, idx, delayMs: f.delayMs };
    prev = idx;
  }
  flush();
  parts.push(Uint8Array.from([0x3b]));
  return Buffer.concat(parts);
}
