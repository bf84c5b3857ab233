import type { DType__Output as DType } from "./gen/rlmesh/v1/DType.js";

export type { DType };
export type TypedArray = Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** A tensor in memory; `data` is a typed array of the element type (float16/bfloat16 as Uint16Array). */
export interface HostTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

/** Thrown when a tensor's bytes do not match its dtype and shape. */
export class TensorCodecError extends Error {
  override name = "TensorCodecError";
}

const BYTES: Record<DType, number> = {
  DTYPE_UNSPECIFIED: 0,
  DTYPE_FLOAT32: 4,
  DTYPE_FLOAT16: 2,
  DTYPE_BFLOAT16: 2,
  DTYPE_INT32: 4,
  DTYPE_INT64: 8,
  DTYPE_UINT8: 1,
};

export function bytesPerElement(dtype: DType): number {
  const n = BYTES[dtype];
  if (!n) throw new TensorCodecError(`unsupported dtype ${dtype}`);
  return n;
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Raw little-endian bytes of a tensor (a copy-free view on little-endian hosts). */
export function tensorToBytes(t: HostTensor): Buffer {
  const expected = numElements(t.shape) * bytesPerElement(t.dtype);
  if (t.data.byteLength !== expected) {
    throw new TensorCodecError(
      `tensor ${t.name}: ${t.data.byteLength} bytes but shape [${t.shape.join(",")}] of ${t.dtype} needs ${expected}`,
    );
  }
  const view = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (littleEndian) return view;
  const copy = Buffer.from(view);
  const w = bytesPerElement(t.dtype);
  for (let i = 0; i < copy.length; i += w) copy.subarray(i, i + w).reverse();
  return copy;
}

/**
 * A tensor whose data is a typed array over `bytes` itself (no copy) on a little-endian host;
 * the caller hands over `bytes`, which must start at an offset aligned for the dtype (a fresh
 * ArrayBuffer is). Elsewhere, or when misaligned, a byte-swapped copy (tensorFromBytes).
 */
export function tensorOverBytes(name: string, dtype: DType, shape: number[], bytes: Uint8Array): HostTensor {
  const w = bytesPerElement(dtype);
  const expected = numElements(shape) * w;
  if (bytes.byteLength !== expected) {
    throw new TensorCodecError(`tensor ${name}: got ${bytes.byteLength} bytes, shape [${shape.join(",")}] of ${dtype} needs ${expected}`);
  }
  if (!littleEndian || bytes.byteOffset % w !== 0) return tensorFromBytes(name, dtype, shape, bytes);
  const { buffer, byteOffset } = bytes;
  const n = expected / w;
  switch (dtype) {
    case "DTYPE_FLOAT32":
      return { name, dtype, shape, data: new Float32Array(buffer, byteOffset, n) };
    case "DTYPE_INT32":
      return { name, dtype, shape, data: new Int32Array(buffer, byteOffset, n) };
    case "DTYPE_INT64":
      return { name, dtype, shape, data: new BigInt64Array(buffer, byteOffset, n) };
    case "DTYPE_UINT8":
      return { name, dtype, shape, data: new Uint8Array(buffer, byteOffset, n) };
    case "DTYPE_FLOAT16":
    case "DTYPE_BFLOAT16":
      return { name, dtype, shape, data: new Uint16Array(buffer, byteOffset, n) };
    default:
      throw new TensorCodecError(`tensor ${name}: unsupported dtype ${dtype}`);
  }
}

/** Typed array over raw little-endian bytes; copies so the result is aligned and owned. */
export function tensorFromBytes(name: string, dtype: DType, shape: number[], bytes: Uint8Array): HostTensor {
  const w = bytesPerElement(dtype);
  const expected = numElements(shape) * w;
  if (bytes.byteLength !== expected) {
    throw new TensorCodecError(`tensor ${name}: got ${bytes.byteLength} bytes, shape [${shape.join(",")}] of ${dtype} needs ${expected}`);
  }
  const buf = new ArrayBuffer(expected);
  const u8 = new Uint8Array(buf);
  u8.set(bytes);
  if (!littleEndian) for (let i = 0; i < expected; i += w) u8.subarray(i, i + w).reverse();
  switch (dtype) {
    case "DTYPE_FLOAT32":
      return { name, dtype, shape, data: new Float32Array(buf) };
    case "DTYPE_INT32":
      return { name, dtype, shape, data: new Int32Array(buf) };
    case "DTYPE_INT64":
      return { name, dtype, shape, data: new BigInt64Array(buf) };
    case "DTYPE_UINT8":
      return { name, dtype, shape, data: u8 };
    case "DTYPE_FLOAT16":
    case "DTYPE_BFLOAT16":
      return { name, dtype, shape, data: new Uint16Array(buf) };
    default:
      throw new TensorCodecError(`tensor ${name}: unsupported dtype ${dtype}`);
  }
}
