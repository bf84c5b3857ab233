import { open, readFile, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";

import { HfImportError } from "./hf-import-error.js";

/**
 * A small safetensors reader and writer (the format: 8-byte little-endian header length N, N bytes
 * of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`, then the
 * raw little-endian tensor bytes; offsets are relative to the end of the header).
 *
 * Written here rather than taken from npm: the format is one page, the import needs exact control
 * of errors (every refusal names the file and the tensor), of memory (one tensor at a time, read
 * by offset from an open file, never the whole 15 GB shard), and of BF16/F16 → float32 conversion;
 * the npm packages seen either read whole files into memory or pull in a tensor library.
 */

export type SafetensorsDtype = "F32" | "F16" | "BF16";
const ITEM_SIZE: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** Headers above this are refused as corrupt (real ones are a few hundred KB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range in the file. */
  start: number;
  end: number;
  /** Path of the file and the name errors use for it. */
  path: string;
  file: string;
}

export interface SafetensorsFile {
  path: string;
  file: string;
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

function fail(file: string, what: string): never {
  throw new HfImportError(`${file}: ${what}`);
}

/** Reads and checks the header of one .safetensors file (not the tensor data). */
export async function readSafetensorsHeader(path: string, file = basename(path)): Promise<SafetensorsFile> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    fail(file, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (size < 8) fail(file, `safetensors header: file is ${size} bytes, shorter than the 8-byte header length`);
  const fh = await open(path, "r");
  try {
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      fail(file, `safetensors header: header length ${n} does not fit in a ${size}-byte file`);
    }
    const headerLen = Number(n);
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString("utf8"));
    } catch (err) {
      fail(file, `safetensors header: invalid JSON (${(err as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) fail(file, "safetensors header: not a JSON object");
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const tensors = new Map<string, SafetensorsTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const where = `safetensors header: tensor "${name}"`;
      if (typeof t !== "object" || t === null) fail(file, `${where} is not an object`);
      if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
        fail(file, `${where} has dtype ${JSON.stringify(t.dtype)}; supported: F32, F16, BF16`);
      }
      if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
        fail(file, `${where} has shape ${JSON.stringify(t.shape)}, not a list of non-negative integers`);
      }
      const offs = t.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && (o as number) >= 0)) {
        fail(file, `${where} has data_offsets ${JSON.stringify(offs)}, not [begin, end]`);
      }
      const [begin, end] = offs as [number, number];
      const shape = t.shape as number[];
      const bytes = shape.reduce((a, d) => a * d, 1) * ITEM_SIZE[t.dtype];
      if (end - begin !== bytes)
        fail(file, `${where} data_offsets [${begin}, ${end}] hold ${end - begin} bytes, ${t.dtype}[${shape.join(",")}] needs ${bytes}`);
      if (end > dataLen) fail(file, `${where} data_offsets end ${end} is past the end of the data (${dataLen} bytes): truncated file?`);
      tensors.set(name, { name, dtype: t.dtype, shape, start: dataStart + begin, end: dataStart + end, path, file });
    }
    return { path, file, tensors, metadata };
  } finally {
    await fh.close();
  }
}

/** float32 values of a tensor, read by offset (one tensor in memory at a time). */
export async function readSafetensorsTensor(t: SafetensorsTensor, handle?: FileHandle): Promise<Float32Array> {
  const fh = handle ?? (await open(t.path, "r"));
  try {
    const bytes = Buffer.allocUnsafe(t.end - t.start); // filled completely below, or an error
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await fh.read(bytes, done, bytes.length - done, t.start + done);
      if (bytesRead === 0) fail(t.file, `tensor "${t.name}": unexpected end of file`);
      done += bytesRead;
    }
    return toFloat32(bytes, t.dtype);
  } finally {
    if (!handle) await fh.close();
  }
}

export function toFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "F32") return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength));
  const n = bytes.byteLength / 2;
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === "BF16") {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u32[i] = u16[i]! << 16;
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = halfToFloat(u16[i]!);
  return out;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Nearest float16 bits of a float32 value (round to nearest even). */
export function floatToHalf(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** bfloat16 bits of a float32 value (round to nearest even). */
export function floatToBf16(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0]!;
  if ((x & 0x7f800000) === 0x7f800000) return x >>> 16;
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** The .safetensors files of a model directory: sharded via model.safetensors.index.json, or model.safetensors. */
export async function openCheckpointTensors(dir: string): Promise<{ files: SafetensorsFile[]; tensors: Map<string, SafetensorsTensor> }> {
  const indexName = "model.safetensors.index.json";
  let indexText: string | null = null;
  try {
    indexText = await readFile(join(dir, indexName), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const tensors = new Map<string, SafetensorsTensor>();
  if (indexText === null) {
    const single = await readSafetensorsHeader(join(dir, "model.safetensors")).catch((err: unknown) => {
      if (err instanceof HfImportError && /ENOENT/.test(err.message)) {
        throw new HfImportError(`model.safetensors: not found, and no ${indexName} (a checkpoint needs one of them)`);
      }
      throw err;
    });
    for (const [k, v] of single.tensors) tensors.set(k, v);
    return { files: [single], tensors };
  }
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(indexText) as { weight_map?: unknown };
  } catch (err) {
    throw new HfImportError(`${indexName}: invalid JSON (${(err as Error).message})`);
  }
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) throw new HfImportError(`${indexName}: weight_map must be an object`);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\") || file.startsWith(".")) {
      throw new HfImportError(`${indexName}: weight_map["${name}"] must be a plain file name, got ${JSON.stringify(file)}`);
    }
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  const files: SafetensorsFile[] = [];
  for (const [file, names] of byFile) {
    let header: SafetensorsFile;
    try {
      header = await readSafetensorsHeader(join(dir, file), file);
    } catch (err) {
      if (err instanceof HfImportError && /ENOENT/.test(err.message)) {
        throw new HfImportError(`${indexName}: weight_map["${names[0]}"] names ${file}, which does not exist`);
      }
      throw err;
    }
    for (const name of names) {
      const t = header.tensors.get(name);
      if (!t) throw new HfImportError(`${indexName}: weight_map["${name}"] names ${file}, which has no tensor "${name}"`);
      tensors.set(name, t);
    }
    files.push(header);
  }
  return { files, tensors };
}

export interface SafetensorsEntry {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype?: SafetensorsDtype;
}

/** Bytes of a .safetensors file holding the given tensors (F32 by default; F16/BF16 rounded to nearest even). */
export function encodeSafetensors(entries: readonly SafetensorsEntry[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header["__metadata__"] = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const dtype = e.dtype ?? "F32";
    let bytes: Uint8Array;
    if (dtype === "F32") bytes = new Uint8Array(e.data.buffer.slice(e.data.byteOffset, e.data.byteOffset + e.data.byteLength));
    else {
      const u16 = new Uint16Array(e.data.length);
      if (dtype === "BF16") {
        const u32 = new Uint32Array(Float32Array.from(e.data).buffer);
        for (let i = 0; i < u32.length; i++) {
          const x = u32[i]!;
          u16[i] = (x & 0x7f800000) === 0x7f800000 ? x >>> 16 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
        }
      } else for (let i = 0; i < e.data.length; i++) u16[i] = floatToHalf(e.data[i]!);
      bytes = new Uint8Array(u16.buffer);
    }
    header[e.name] = { dtype, shape: e.shape, data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    parts.push(bytes);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(json.byteLength + ((8 - (json.byteLength % 8)) % 8)).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let o = 8 + headerBytes.byteLength;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
