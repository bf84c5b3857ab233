/**
 * A minimal PNG reader for Chromium's screenshots: 8-bit RGB or RGBA, not interlaced (what
 * `chromium --screenshot` writes). Anything else is refused with the reason.
 */
import { inflateSync } from "node:zlib";

export interface RgbaImage {
  width: number;
  height: number;
  /** width * height * 4 bytes, row-major RGBA. */
  data: Uint8Array;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

export function decodePng(buf: Uint8Array, name = "PNG"): RgbaImage {
  if (buf.length < 8 || SIGNATURE.some((b, i) => buf[i] !== b)) throw new Error(`${name}: not a PNG file`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Uint8Array[] = [];
  while (off + 8 <= buf.length) {
    const len = view.getUint32(off);
    const type = String.fromCharCode(...buf.subarray(off + 4, off + 8));
    const body = buf.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = view.getUint32(off + 8);
      height = view.getUint32(off + 12);
      const depth = body[8];
      const colour = body[9];
      const interlace = body[12];
      if (depth !== 8 || (colour !== 2 && colour !== 6) || interlace !== 0) {
        throw new Error(`${name}: only 8-bit RGB/RGBA non-interlaced PNGs are read (bit depth ${depth}, colour type ${colour}, interlace ${interlace})`);
      }
      channels = colour === 6 ? 4 : 3;
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  if (width === 0 || channels === 0) throw new Error(`${name}: no IHDR chunk`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error(`${name}: image data is short (${raw.length} bytes for ${width}x${height})`);
  const data = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      const x = row[i]!;
      switch (filter) {
        case 0:
          cur[i] = x;
          break;
        case 1:
          cur[i] = x + a;
          break;
        case 2:
          cur[i] = x + b;
          break;
        case 3:
          cur[i] = x + ((a + b) >> 1);
          break;
        case 4:
          cur[i] = x + paeth(a, b, c);
          break;
        default:
          throw new Error(`${name}: unknown PNG filter ${filter} in row ${y}`);
      }
    }
    for (let px = 0; px < width; px++) {
      const o = (y * width + px) * 4;
      data[o] = cur[px * channels]!;
      data[o + 1] = cur[px * channels + 1]!;
      data[o + 2] = cur[px * channels + 2]!;
      data[o + 3] = channels === 4 ? cur[px * channels + 3]! : 255;
    }
    prev = cur;
  }
  return { width, height, data };
}
