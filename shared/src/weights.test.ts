import { test } from "node:test";
import assert from "node:assert/strict";
import { acceptsPolicy, chunkWeights, WeightAssembler, weightsChecksum } from "./weights.js";
import { tensorFromBytes, tensorToBytes, type HostTensor } from "./tensor.js";

const tensors = (): HostTensor[] => [
  { name: "b", dtype: "DTYPE_FLOAT32", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => i * 0.5 - 3) },
  { name: "a", dtype: "DTYPE_INT64", shape: [4], data: BigInt64Array.from([1n, -2n, 3n, 2n ** 40n]) },
];

test("tensor codec round-trips raw little-endian bytes and rejects a size mismatch", () => {
  const t = tensors()[0]!;
  const bytes = tensorToBytes(t);
  assert.equal(bytes.readFloatLE(4), 0.5 - 3);
  assert.deepEqual(tensorFromBytes("b", t.dtype, t.shape, bytes).data, t.data);
  assert.throws(() => tensorFromBytes("b", t.dtype, [4, 5], bytes), /needs 80/);
});

test("weights survive chunking and reassembly with the checksum verified", () => {
  const chunks = [...chunkWeights(7, tensors(), 16)];
  assert.ok(chunks.length > 4, "small chunk size splits tensors");
  const asm = new WeightAssembler();
  for (const c of chunks) asm.add({ ...c, data: Buffer.from(c.data as Uint8Array) } as never);
  const { version, tensors: out } = asm.finish();
  assert.equal(version, 7);
  assert.equal(weightsChecksum(out), weightsChecksum(tensors()));
  assert.deepEqual(out.find((t) => t.name === "a")?.data, tensors()[1]!.data);
});

test("a corrupted or truncated stream is rejected with the reason", () => {
  const chunks = [...chunkWeights(1, tensors(), 16)].map((c) => ({ ...c, data: Buffer.from(c.data as Uint8Array) }));
  const corrupt = new WeightAssembler();
  for (const c of chunks) corrupt.add(c as never);
  const victim = chunks[1]!.data;
  victim[0] = (victim[0] ?? 0) ^ 0xff;
  const asm = new WeightAssembler();
  for (const c of chunks) asm.add(c as never);
  assert.throws(() => asm.finish(), /checksum mismatch/);
  const short = new WeightAssembler();
  for (const c of chunks.slice(0, -1)) short.add(c as never);
  assert.throws(() => short.finish(), /received \d+ of \d+ bytes/);
});

test("a weight stream carries its job with the version; a chunk of another job inside it is rejected", () => {
  const chunks = [...chunkWeights({ jobId: "job-b", version: 0 }, tensors(), 16)].map((c) => ({ ...c, data: Buffer.from(c.data as Uint8Array) }));
  const asm = new WeightAssembler();
  for (const c of chunks) asm.add(c as never);
  const out = asm.finish();
  assert.equal(out.jobId, "job-b");
  assert.equal(out.version, 0);
  const mixed = new WeightAssembler();
  mixed.add(chunks[0] as never);
  assert.throws(() => mixed.add({ ...chunks[1]!, jobId: "job-a" } as never), /chunk for job job-a v0 inside the stream of job job-b v0/);
});

test("versions are scoped by job: version 0 of another job is taken, only a newer version of the same job", () => {
  const serving = { jobId: "job-a", version: 5 };
  assert.equal(acceptsPolicy({ jobId: "job-b", version: 0 }, serving), true);
  assert.equal(acceptsPolicy({ jobId: "job-a", version: 6 }, serving), true);
  assert.equal(acceptsPolicy({ jobId: "job-a", version: 5 }, serving), false);
  assert.equal(acceptsPolicy({ jobId: "job-a", version: 0 }, serving), false);
  assert.equal(acceptsPolicy({ jobId: "", version: 0 }, { jobId: "", version: 0 }), false);
});

const bigTensors = (): HostTensor[] => [
  { name: "w.b", dtype: "DTYPE_FLOAT32", shape: [40], data: Float32Array.from({ length: 40 }, (_, i) => i / 3) },
  { name: "w.a", dtype: "DTYPE_FLOAT16", shape: [2, 9], data: Uint16Array.from({ length: 18 }, (_, i) => 1000 + i) },
  { name: "w.c", dtype: "DTYPE_INT32", shape: [0], data: new Int32Array(0) },
  { name: "w.d", dtype: "DTYPE_UINT8", shape: [7], data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7]) },
];

test("chunks go in checksum order (tensors by name, ascending offsets) and reassemble into aligned typed arrays", () => {
  const chunks = [...chunkWeights(3, bigTensors(), 24)];
  assert.deepEqual([...new Set(chunks.map((c) => c.tensorName))], ["w.a", "w.b", "w.c", "w.d"]);
  for (let i = 1; i < chunks.length; i++)
    if (chunks[i]!.tensorName === chunks[i - 1]!.tensorName) assert.ok(Number(chunks[i]!.offset) > Number(chunks[i - 1]!.offset));
  const asm = new WeightAssembler();
  for (const c of chunks) asm.add({ ...c, data: Buffer.from(c.data as Uint8Array) } as never);
  const out = asm.finish().tensors;
  for (const want of bigTensors()) {
    const got = out.find((t) => t.name === want.name)!;
    assert.equal(got.data.constructor, want.data.constructor, want.name);
    assert.deepEqual(got.data, want.data, want.name);
    assert.equal(got.data.byteOffset % 8, 0);
  }
});

test("a stream out of checksum order is still verified (at finish), and still caught when corrupted", () => {
  const chunks = [...chunkWeights(4, bigTensors(), 24)].map((c) => ({ ...c, data: Buffer.from(c.data as Uint8Array) }));
  // Tensors in reverse name order, and one tensor's chunks reversed.
  const reordered = [...chunks].reverse();
  const asm = new WeightAssembler();
  for (const c of reordered) asm.add(c as never);
  const out = asm.finish();
  assert.equal(weightsChecksum(out.tensors), weightsChecksum(bigTensors()));
  const bad = reordered.map((c, i) => (i === 2 ? { ...c, data: Buffer.from(c.data).fill(9) } : c));
  const asm2 = new WeightAssembler();
  for (const c of bad) asm2.add(c as never);
  assert.throws(() => asm2.finish(), /checksum mismatch/);
});

test("a repeated chunk that leaves a gap is caught whatever the order", () => {
  const chunks = [...chunkWeights(5, bigTensors(), 24)].map((c) => ({ ...c, data: Buffer.from(c.data as Uint8Array) }));
  const i = chunks.findIndex((c) => c.tensorName === "w.b" && c.offset === 24);
  // The first chunk of w.b twice instead of its second: the byte count adds up, the bytes do not.
  const dup = chunks.map((c, k) => (k === i ? { ...chunks[i - 1]!, data: Buffer.from(chunks[i - 1]!.data) } : c));
  const asm = new WeightAssembler();
  for (const c of dup) asm.add(c as never);
  assert.throws(() => asm.finish(), /checksum mismatch/);
});

test("a tensor whose shape needs more than total_bytes is refused at its first chunk (nothing allocated)", () => {
  const [first] = [...chunkWeights(6, bigTensors(), 24)];
  const asm = new WeightAssembler();
  assert.throws(() => asm.add({ ...first!, shape: [1e9], data: Buffer.alloc(0) } as never), /more than total_bytes/);
});

test("tensors that each fit total_bytes but together do not are refused before they are allocated; total_bytes 0 is refused", () => {
  const chunks = [...chunkWeights(6, bigTensors(), 24)];
  const asm = new WeightAssembler();
  const first = chunks[0]!;
  // Two byte tensors of just over half of total_bytes each: the first fits, the second does not.
  const half = Math.floor(Number(first.totalBytes) / 2) + 1;
  asm.add({ ...first, tensorName: "a", dtype: "DTYPE_UINT8", shape: [half], offset: 0, data: Buffer.alloc(0) } as never);
  assert.throws(
    () => asm.add({ ...first, tensorName: "b", dtype: "DTYPE_UINT8", shape: [half], offset: 0, data: Buffer.alloc(0) } as never),
    /with the tensors before it that is more than total_bytes/,
  );
  assert.throws(() => new WeightAssembler().add({ ...first, totalBytes: 0 } as never), /total_bytes > 0/);
});
