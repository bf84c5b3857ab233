import { createHash, type Hash } from "node:crypto";
import type { WeightChunk, WeightChunkIn } from "./types.js";
import { bytesPerElement, numElements, tensorOverBytes, tensorToBytes, type HostTensor } from "./tensor.js";

/** Bytes of tensor data per UpdateWeights chunk (well under the gRPC message limit). */
export const DEFAULT_WEIGHT_CHUNK_BYTES = 1 << 20;

/** Thrown when a weight stream is malformed or its checksum does not match. */
export class WeightStreamError extends Error {
  override name = "WeightStreamError";
}

/** sha256 (hex) over every tensor's raw little-endian bytes, tensors in name order. */
export function weightsChecksum(tensors: readonly HostTensor[]): string {
  const h = createHash("sha256");
  for (const t of byName(tensors)) h.update(tensorToBytes(t));
  return h.digest("hex");
}

/** Tensors in the checksum's order (by name, UTF-16 code units). */
function byName(tensors: readonly HostTensor[]): HostTensor[] {
  return [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Splits a weight version into UpdateWeights chunks; each carries the job and version (a bare
 * number is a version of job "", a model directory's own weights), the checksum and total size.
 * Tensors go in name order, each in ascending offsets: the order the checksum hashes them, so a
 * receiver verifies the checksum as the bytes arrive (WeightAssembler). Chunks are views of the
 * tensors' memory (no copy).
 */
export function* chunkWeights(
  policy: PolicyRef | number,
  tensors: readonly HostTensor[],
  chunkBytes = DEFAULT_WEIGHT_CHUNK_BYTES,
): Generator<WeightChunkIn> {
  const { jobId, version } = typeof policy === "number" ? { jobId: "", version: policy } : policy;
  const checksum = weightsChecksum(tensors);
  const totalBytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  for (const t of byName(tensors)) {
    const bytes = tensorToBytes(t);
    for (let off = 0; off < bytes.length || off === 0; off += chunkBytes) {
      yield {
        jobId,
        version,
        checksum,
        totalBytes,
        tensorName: t.name,
        dtype: t.dtype,
        shape: t.shape,
        offset: off,
        data: bytes.subarray(off, off + chunkBytes),
      };
      if (bytes.length === 0) break;
    }
  }
}

interface Part {
  dtype: WeightChunk["dtype"];
  shape: number[];
  /** The tensor's bytes, allocated once from its shape at its first chunk; becomes its data. */
  bytes: Uint8Array;
  filled: number;
}

/**
 * Reassembles chunks into tensors and verifies offsets, sizes, version consistency and the
 * checksum. Throws WeightStreamError saying what is wrong; nothing partial is returned.
 *
 * Each tensor is allocated once, at its first chunk, and every chunk is copied straight into it
 * (the only copy: finish() hands out typed arrays over those bytes). The checksum is computed as
 * the chunks arrive while they come in its order (tensors by name, ascending offsets — how
 * chunkWeights sends them); a stream in any other order is still verified, by hashing everything
 * in finish().
 */
export class WeightAssembler {
  version = -1;
  jobId = "";
  checksum = "";
  totalBytes = 0;
  received = 0;
  private readonly parts = new Map<string, Part>();
  /** sha256 of the bytes so far while they arrive in checksum order; null once they did not. */
  /** Bytes of the tensors allocated so far (never more than totalBytes). */
  private allocated = 0;
  private hash: Hash | null = createHash("sha256");
  private hashName: string | null = null;
  private hashPart: Part | null = null;

  add(c: WeightChunk): void {
    if (this.version < 0) {
      if (!c.checksum) throw new WeightStreamError("first chunk must carry the checksum");
      this.version = c.version;
      this.jobId = c.jobId ?? "";
      this.checksum = c.checksum;
      this.totalBytes = c.totalBytes;
    } else if (c.version !== this.version || (c.jobId ?? "") !== this.jobId) {
      throw new WeightStreamError(
        `chunk for ${formatPolicy({ jobId: c.jobId ?? "", version: c.version })} inside the stream of ${formatPolicy(this)}`,
      );
    }
    if (!c.tensorName) throw new WeightStreamError("chunk without tensor_name");
    let part = this.parts.get(c.tensorName);
    if (!part) {
      let size: number;
      try {
        size = numElements(c.shape) * bytesPerElement(c.dtype);
      } catch (err) {
        throw new WeightStreamError(`tensor ${c.tensorName}: ${(err as Error).message}`);
      }
      // Every tensor's bytes together must fit the announced total before any is allocated.
      if (!(Number(this.totalBytes) > 0)) throw new WeightStreamError("first chunk must carry total_bytes > 0");
      if (this.allocated + size > Number(this.totalBytes))
        throw new WeightStreamError(
          `tensor ${c.tensorName}: shape [${c.shape.join(",")}] needs ${size} bytes; with the tensors before it that is more than total_bytes=${this.totalBytes}`,
        );
      this.allocated += size;
      // A fresh ArrayBuffer (calloc'd, not zero-filled by hand), aligned for any typed array.
      part = { dtype: c.dtype, shape: c.shape, bytes: new Uint8Array(new ArrayBuffer(size)), filled: 0 };
      this.parts.set(c.tensorName, part);
    }
    if (c.offset + c.data.length > part.bytes.length) {
      throw new WeightStreamError(
        `tensor ${c.tensorName}: chunk at offset ${c.offset} (+${c.data.length}) overruns its ${part.bytes.length} bytes`,
      );
    }
    this.received += c.data.length;
    if (this.totalBytes && this.received > this.totalBytes)
      throw new WeightStreamError(`received more than total_bytes=${this.totalBytes}`);
    part.bytes.set(c.data, c.offset);
    part.filled += c.data.length;
    this.hashInOrder(c.tensorName, part, c);
  }

  /** Feeds the running checksum while the stream keeps to its order; gives up on it otherwise. */
  private hashInOrder(name: string, part: Part, c: WeightChunk): void {
    if (!this.hash) return;
    if (this.hashPart !== part) {
      const prev = this.hashPart;
      // A new tensor: the previous one must be whole and this one must come after it by name.
      if ((prev && (prev.filled !== prev.bytes.length || this.hashName! >= name)) || c.offset !== 0 || part.filled !== c.data.length) {
        this.hash = null;
        return;
      }
      this.hashName = name;
      this.hashPart = part;
    } else if (c.offset + c.data.length !== part.filled) {
      // Not the next bytes of this tensor (a gap, an overlap or a repeat).
      this.hash = null;
      return;
    }
    this.hash.update(c.data);
  }

  finish(): { version: number; jobId: string; tensors: HostTensor[] } {
    if (this.version < 0) throw new WeightStreamError("empty weight stream");
    const tensors: HostTensor[] = [];
    for (const [name, p] of this.parts) {
      if (p.filled !== p.bytes.length) throw new WeightStreamError(`tensor ${name}: received ${p.filled} of ${p.bytes.length} bytes`);
      tensors.push(tensorOverBytes(name, p.dtype, p.shape, p.bytes));
    }
    // Every tensor is whole, so a hash still running saw each one once, entirely, in name order.
    const sum = this.hash ? this.hash.digest("hex") : weightsChecksum(tensors);
    this.hash = null;
    if (sum !== this.checksum)
      throw new WeightStreamError(`checksum mismatch: stream says ${this.checksum.slice(0, 12)}…, data hashes to ${sum.slice(0, 12)}…`);
    return { version: this.version, jobId: this.jobId, tensors };
  }
}

/** A policy version as it arrives: a number, a decimal string, or a 64-bit integer object (Long). */
export type VersionLike = number | string | bigint | { toString(): string };

/**
 * The one rule for "is this weight version newer than the one I have": versions are integers
 * that only grow (proto int64 fields arrive as numbers or strings); a missing current version
 * is 0, the base model.
 */
export function isNewerVersion(candidate: VersionLike, current: VersionLike | null | undefined): boolean {
  return Number(candidate) > Number(current ?? 0);
}

/**
 * A policy version scoped by its job. Versions count from 0 in every job (a job's StartJob
 * publishes version 0 of its starting weights); job "" is a model directory's own weights.
 */
export interface PolicyRef {
  jobId: string;
  version: number;
}

/**
 * The one rule for "does a worker serving `serving` take `candidate`": any version of another
 * job (a job that starts, or the learner moving back to a resumed job), and only a newer version
 * of the job it serves.
 */
export function acceptsPolicy(candidate: PolicyRef, serving: PolicyRef): boolean {
  return candidate.jobId !== serving.jobId || isNewerVersion(candidate.version, serving.version);
}

export function samePolicy(a: PolicyRef, b: PolicyRef): boolean {
  return a.jobId === b.jobId && Number(a.version) === Number(b.version);
}

/** "job J v3", or "model-dir v0" for job "". */
export function formatPolicy(p: PolicyRef): string {
  return `${p.jobId ? `job ${p.jobId}` : "model-dir"} v${Number(p.version)}`;
}
