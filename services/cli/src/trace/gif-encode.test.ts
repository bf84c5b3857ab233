// The GIF writer against an independent GIF reader written here from the GIF89a spec (header,
// palette, graphic control, image descriptors, LZW with growing code sizes and clear codes):
// every frame composes back to the image it came from. The PNG reader against zlib-deflated
// scanlines with every filter type.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { encodeGif, lzwSubBlocks } from "./gif-encode.js";
import { decodePng, type RgbaImage } from "./png-decode.js";

/** LZW-decodes GIF image data (min code size, then sub-blocks) starting at `off`; returns indices and the offset after. */
function lzwDecode(buf: Uint8Array, off: number, count: number): { indices: number[]; next: number } {
  const minCodeSize = buf[off++]!;
  const data: number[] = [];
  for (let n = buf[off++]!; n > 0; n = buf[off++]!) {
    data.push(...buf.subarray(off, off + n));
    off += n;
  }
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  let size = minCodeSize + 1;
  let table: number[][] = [];
  const reset = () => {
    table = Array.from({ length: clear + 2 }, (_, i) => (i < clear ? [i] : []));
    size = minCodeSize + 1;
  };
  reset();
  const out: number[] = [];
  let bit = 0;
  let prev: number[] | null = null;
  const read = () => {
    let v = 0;
    for (let i = 0; i < size; i++, bit++) v |= ((data[bit >> 3]! >> (bit & 7)) & 1) << i;
    return v;
  };
  for (;;) {
    if (bit + size > data.length * 8) throw new Error("LZW data ended without EOI");
    const code = read();
    if (code === clear) {
      reset();
      prev = null;
      continue;
    }
    if (code === eoi) break;
    let entry: number[];
    if (code < table.length) entry = table[code]!;
    else if (code === table.length && prev) entry = [...prev, prev[0]!];
    else throw new Error(`bad LZW code ${code} (table ${table.length})`);
    out.push(...entry);
    if (prev && table.length < 4096) table.push([...prev, entry[0]!]);
    if (table.length === 1 << size && size < 12) size++;
    prev = entry;
  }
  assert.equal(out.length, count, "pixel count of the frame");
  return { indices: out, next: off };
}

/** Decodes an animated GIF into its composed RGB frames (disposal: keep) and delays. */
function decodeGif(buf: Uint8Array): { width: number; height: number; frames: Array<{ rgb: Uint8Array; delayCs: number }>; loops: boolean } {
  assert.equal(Buffer.from(buf.subarray(0, 6)).toString(), "GIF89a");
  const width = buf[6]! | (buf[7]! << 8);
  const height = buf[8]! | (buf[9]! << 8);
  const flags = buf[10]!;
  assert.ok(flags & 0x80, "global colour table");
  const gctSize = 2 << (flags & 7);
  let off = 13;
  const gct = buf.subarray(off, off + gctSize * 3);
  off += gctSize * 3;
  const canvas = new Uint8Array(width * height * 3);
  const frames: Array<{ rgb: Uint8Array; delayCs: number }> = [];
  let delayCs = 0;
  let loops = false;
  for (;;) {
    const b = buf[off++];
    if (b === 0x3b) break;
    if (b === 0x21) {
      const label = buf[off++];
      if (label === 0xf9) delayCs = buf[off + 2]! | (buf[off + 3]! << 8);
      if (label === 0xff && Buffer.from(buf.subarray(off + 1, off + 12)).toString() === "NETSCAPE2.0") loops = true;
      for (let n = buf[off++]!; n > 0; n = buf[off++]!) off += n;
      continue;
    }
    assert.equal(b, 0x2c, `image descriptor at ${off - 1}`);
    const x0 = buf[off]! | (buf[off + 1]! << 8);
    const y0 = buf[off + 2]! | (buf[off + 3]! << 8);
    const w = buf[off + 4]! | (buf[off + 5]! << 8);
    const h = buf[off + 6]! | (buf[off + 7]! << 8);
    assert.equal(buf[off + 8]! & 0x80, 0, "no local colour table");
    off += 9;
    const { indices, next } = lzwDecode(buf, off, w * h);
    off = next;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const k = indices[y * w + x]!;
        canvas.set(gct.subarray(k * 3, k * 3 + 3), ((y0 + y) * width + x0 + x) * 3);
      }
    frames.push({ rgb: canvas.slice(), delayCs });
  }
  return { width, height, frames, loops };
}

const rgbOf = (img: RgbaImage) => {
  const out = new Uint8Array(img.width * img.height * 3);
  for (let p = 0; p < img.width * img.height; p++) out.set(img.data.subarray(p * 4, p * 4 + 3), p * 3);
  return out;
};

/** A test image of `w`x`h` drawn by `colour(x, y)` (RGB values that a 5-bit palette holds exactly). */
function image(w: number, h: number, colour: (x: number, y: number) => [number, number, number]): RgbaImage {
  const data = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      data.set([...colour(x, y), 255], (y * w + x) * 4);
    }
  return { width: w, height: h, data };
}

test("GIF frames compose back to their images; unchanged frames merge into a longer delay; it loops", () => {
  const white: [number, number, number] = [255, 255, 255];
  const grey: [number, number, number] = [132, 132, 132];
  const blue: [number, number, number] = [66, 99, 255];
  const frame = (k: number) => image(61, 23, (x, y) => (x < k * 10 && y > 5 ? blue : (x + y) % 7 === 0 ? grey : white));
  const frames = [0, 1, 2, 2, 5].map((k) => ({ image: frame(k), delayMs: 250 }));
  const gif = decodeGif(encodeGif(frames));
  assert.equal(gif.width, 61);
  assert.equal(gif.height, 23);
  assert.ok(gif.loops);
  assert.equal(gif.frames.length, 4, "the repeated frame is merged");
  assert.deepEqual(
    gif.frames.map((f) => f.delayCs),
    [25, 25, 50, 25],
  );
  [0, 1, 2, 5].forEach((k, i) => assert.deepEqual(gif.frames[i]!.rgb, rgbOf(frame(k)), `frame ${i}`));
});

test("LZW: long and varied data crosses the 4096-code limit (clear codes) and decodes exactly", () => {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff), s);
  const indices = Uint8Array.from({ length: 60_000 }, (_, i) => (i % 3000 < 1500 ? rnd() & 255 : (i >> 4) & 3));
  const { indices: back } = lzwDecode(lzwSubBlocks(indices), 0, indices.length);
  assert.deepEqual(Uint8Array.from(back), indices);
});

/** A PNG of `img` with row filter `filter(y)`, written here from the PNG spec. */
function encodePng(img: RgbaImage, channels: 3 | 4, filter: (y: number) => number): Uint8Array {
  const stride = img.width * channels;
  const rows: number[] = [];
  const px = (x: number, y: number, c: number) => (x < 0 || y < 0 ? 0 : img.data[(y * img.width + x) * 4 + c]!);
  const paeth = (a: number, b: number, c: number) => {
    const p = a + b - c;
    const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
  };
  for (let y = 0; y < img.height; y++) {
    const f = filter(y);
    rows.push(f);
    for (let i = 0; i < stride; i++) {
      const x = Math.floor(i / channels);
      const c = i % channels;
      const v = px(x, y, c);
      const a = px(x - 1, y, c);
      const b = px(x, y - 1, c);
      const d = px(x - 1, y - 1, c);
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, d)][f]!;
      rows.push((v - pred) & 255);
    }
  }
  const chunk = (type: string, body: Uint8Array) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    return Buffer.concat([len, Buffer.from(type), body, Buffer.alloc(4)]); // the reader does not check CRCs
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(img.width, 0);
  ihdr.writeUInt32BE(img.height, 4);
  ihdr.set([8, channels === 4 ? 6 : 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.from(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

test("PNG reader: RGB and RGBA, every row filter", () => {
  const img = image(17, 11, (x, y) => [(x * 37 + y * 11) & 255, (x * y * 5) & 255, (255 - x * 13) & 255]);
  for (const channels of [3, 4] as const) {
    const back = decodePng(encodePng(img, channels, (y) => y % 5));
    assert.equal(back.width, 17);
    assert.equal(back.height, 11);
    assert.deepEqual(back.data, img.data, `${channels} channels`);
  }
  assert.throws(() => decodePng(Uint8Array.from([1, 2, 3]), "x.png"), /x\.png: not a PNG file/);
});
