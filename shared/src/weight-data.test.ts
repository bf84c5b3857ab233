// The tcp-v1 weight data connection over real loopback sockets: round trip into aligned typed
// arrays with both digests, and every way a stream can go wrong on the way (a flipped byte,
// truncation, reordered segments, extra bytes, another version, an unknown token, no listener),
// the wrong bytes injected by a TCP proxy between the pusher's data server and the receiver.
import { test, after, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import * as zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { tensorToBytes, type HostTensor } from "./tensor.js";
import { weightsChecksum, WeightStreamError } from "./weights.js";
import {
  crc32ByTable,
  DirectPushLost,
  KEEPALIVE_IDLE_MS,
  peerHost,
  receiveWeightData,
  WeightDataConnectError,
  WeightDataReceiver,
  weightDataMetadata,
  WeightDataPayload,
  weightDataRequest,
  WeightDataServer,
  type DirectApply,
  type WeightDataDigest,
} from "./weight-data.js";

const SEG = 4096;
const tensors = (): HostTensor[] => [
  { name: "w.b", dtype: "DTYPE_FLOAT32", shape: [3, 1500], data: Float32Array.from({ length: 4500 }, (_, i) => Math.sin(i)) },
  { name: "w.a", dtype: "DTYPE_INT64", shape: [4], data: BigInt64Array.from([1n, -2n, 3n, 2n ** 40n]) },
  { name: "w.empty", dtype: "DTYPE_FLOAT32", shape: [0, 8], data: new Float32Array(0) },
  { name: "w.h", dtype: "DTYPE_FLOAT16", shape: [2049], data: Uint16Array.from({ length: 2049 }, (_, i) => i) },
];
const policy = { jobId: "job-x", version: 3 };

const servers: { close(): void }[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function dataServer(): Promise<WeightDataServer> {
  const s = new WeightDataServer("127.0.0.1", 0);
  servers.push(s);
  await s.start();
  return s;
}

/**
 * A TCP proxy in front of `port`: the receiver's greeting goes through unchanged; what the data
 * server sends is collected until it closes, passed through `mangle`, then sent on.
 */
async function proxy(port: number, mangle: (b: Buffer) => Buffer): Promise<number> {
  const server: Server = createServer((down: Socket) => {
    const up = connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    down.on("data", (d) => up.write(d));
    down.on("error", () => up.destroy());
    up.on("data", (d) => got.push(d));
    up.on("error", () => down.destroy());
    up.on("end", () => down.end(mangle(Buffer.concat(got))));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

/** Offers `payload` and receives it through `port` (the data server's, or a proxy's). */
async function roundTrip(server: WeightDataServer, payload: WeightDataPayload, port?: number, expect = policy) {
  const offer = await server.offer(payload);
  try {
    return await receiveWeightData({ host: "127.0.0.1", port: port ?? offer.port, token: offer.token, expect });
  } finally {
    offer.cancel();
  }
}

/** Where the tensor data starts in the data server's stream (after magic, length and header). */
const dataStart = (p: WeightDataPayload) => p.head.length;

for (const digest of ["crc32", "sha256"] as WeightDataDigest[]) {
  test(`a version round-trips over the data connection into aligned typed arrays (${digest}, ${SEG}-byte segments)`, async () => {
    const server = await dataServer();
    const payload = new WeightDataPayload(policy, tensors(), { digest, segmentBytes: SEG });
    const got = await roundTrip(server, payload);
    assert.deepEqual([got.jobId, got.version], ["job-x", 3]);
    assert.equal(got.received, payload.totalBytes);
    assert.equal(got.received, 4500 * 4 + 32 + 2049 * 2);
    assert.deepEqual(
      got.tensors.map((t) => t.name),
      ["w.a", "w.b", "w.empty", "w.h"],
    );
    assert.equal(weightsChecksum(got.tensors), weightsChecksum(tensors()));
    const b = got.tensors.find((t) => t.name === "w.b")!;
    assert.ok(b.data instanceof Float32Array && b.data.byteOffset % 4 === 0);
    assert.deepEqual(b.shape, [3, 1500]);
    assert.deepEqual(got.tensors.find((t) => t.name === "w.a")!.data, tensors()[1]!.data);
    // The same payload serves a second receiver (as every worker of one push).
    assert.equal(weightsChecksum((await roundTrip(server, payload)).tensors), weightsChecksum(tensors()));
  });
}

test("a flipped byte anywhere in the data or the header fails the digest with the tensor and byte range", async () => {
  const server = await dataServer();
  const payload = new WeightDataPayload(policy, tensors(), { segmentBytes: SEG });
  // w.a is 32 bytes (one segment + 4-byte digest); w.b starts after it: flip its byte 5000 (second segment).
  const at = dataStart(payload) + 32 + 4 + SEG + 4 + (5000 - SEG);
  const port = await proxy(await server.start(), (b) => {
    b[at] = b[at]! ^ 0x01;
    return b;
  });
  await assert.rejects(roundTrip(server, payload, port), (err: Error) => {
    assert.ok(err instanceof WeightStreamError);
    assert.match(err.message, /tensor w\.b: bytes \[4096, 8192\) fail the crc32 check .*corrupted, reordered or lost/);
    return true;
  });
  // A header byte that still parses (a digit of the version inside the JSON is not, but a tensor name's letter is).
  const headAt = payload.head.indexOf(Buffer.from('"w.h"')) + 1;
  const port2 = await proxy(await server.start(), (b) => {
    b[headAt] = "x".charCodeAt(0);
    return b;
  });
  await assert.rejects(roundTrip(server, payload, port2), /tensor w\.a: bytes \[0, 32\) fail the crc32 check/);
});

test("a truncated stream, extra bytes and reordered segments are refused", async () => {
  const server = await dataServer();
  const payload = new WeightDataPayload(policy, tensors(), { segmentBytes: SEG });
  const total = payload.totalBytes;
  const cut = await proxy(await server.start(), (b) => b.subarray(0, b.length - 1000));
  await assert.rejects(roundTrip(server, payload, cut), new RegExp(`data connection ended after \\d+ of ${total} bytes \\(truncated\\)`));
  const extra = await proxy(await server.start(), (b) => Buffer.concat([b, Buffer.from("more")]));
  await assert.rejects(roundTrip(server, payload, extra), /more bytes than the header's total_bytes/);
  // Swap w.b's first two segments, each with its digest: every segment is intact, the order is not.
  const b0 = dataStart(payload) + 32 + 4;
  const swap = await proxy(await server.start(), (b) => {
    const s1 = Buffer.from(b.subarray(b0, b0 + SEG + 4));
    const s2 = Buffer.from(b.subarray(b0 + SEG + 4, b0 + 2 * (SEG + 4)));
    s2.copy(b, b0);
    s1.copy(b, b0 + SEG + 4);
    return b;
  });
  await assert.rejects(roundTrip(server, payload, swap), /tensor w\.b: bytes \[0, 4096\) fail the crc32 check/);
  const headerOnly = await proxy(await server.start(), (b) => b.subarray(0, 6));
  await assert.rejects(roundTrip(server, payload, headerOnly), /ended before the header/);
});

test("data of another version than the call announced is refused; so are a bad magic and an unknown token", async () => {
  const server = await dataServer();
  const payload = new WeightDataPayload({ jobId: "job-x", version: 4 }, tensors(), { segmentBytes: SEG });
  await assert.rejects(roundTrip(server, payload), /data header is for job job-x v4, but the call announced job job-x v3/);
  const other = new WeightDataPayload({ jobId: "job-y", version: 3 }, tensors(), { segmentBytes: SEG });
  await assert.rejects(roundTrip(server, other), /data header is for job job-y v3, but the call announced job job-x v3/);
  const badMagic = await proxy(await server.start(), (b) => Buffer.concat([Buffer.from("XXXX"), b.subarray(4)]));
  await assert.rejects(roundTrip(server, new WeightDataPayload(policy, tensors()), badMagic), /not a tcp-v1 weight stream \(bad magic\)/);
  // A token the server never offered: it drops the connection without a byte.
  await assert.rejects(
    receiveWeightData({ host: "127.0.0.1", port: await server.start(), token: randomBytes(16).toString("hex"), expect: policy }),
    /ended before the header/,
  );
});

test("a receiver that cannot connect says so (WeightDataConnectError); an abort cancels a receive", async () => {
  const free = createServer();
  await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
  const port = (free.address() as { port: number }).port;
  await new Promise<void>((r) => free.close(() => r()));
  await assert.rejects(receiveWeightData({ host: "127.0.0.1", port, token: "0".repeat(32), expect: policy }), (err: Error) => {
    assert.ok(err instanceof WeightDataConnectError);
    assert.match(err.message, /cannot open the data connection to 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    return true;
  });
  const server = await dataServer();
  const offer = await server.offer(new WeightDataPayload(policy, tensors()));
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(receiveWeightData({ host: "127.0.0.1", port: offer.port, token: offer.token, expect: policy, signal: ac.signal }), /cancelled/);
  offer.cancel();
  await offer.done;
});

test("UpdateWeights metadata: tcp-v1 parameters round-trip; a bad one is refused naming its key", () => {
  const md = weightDataMetadata({ port: 4321, token: "ab".repeat(16) }, { jobId: "job/ü 1", version: 12 });
  assert.deepEqual(weightDataRequest(md), { port: 4321, token: "ab".repeat(16), expect: { jobId: "job/ü 1", version: 12 } });
  assert.equal(weightDataRequest(new grpc.Metadata()), null, "no transport key: chunks on the stream");
  const bad = (key: string, value: string) => {
    const m = md.clone();
    m.set(key, value);
    return () => weightDataRequest(m);
  };
  assert.throws(bad("rlmesh-weight-transport", "udp"), /metadata rlmesh-weight-transport: unknown transport "udp"/);
  assert.throws(bad("rlmesh-weight-data-port", "0"), /metadata rlmesh-weight-data-port: must be a port in \[1, 65535\], got 0/);
  assert.throws(bad("rlmesh-weight-data-token", "xyz"), /metadata rlmesh-weight-data-token: must be 32 hex characters/);
  assert.throws(bad("rlmesh-weight-version", "-1"), /metadata rlmesh-weight-version: must be a non-negative integer, got "-1"/);
  assert.throws(bad("rlmesh-weight-job", "%E0%A4%A"), /metadata rlmesh-weight-job: not URI-encoded/);
  assert.equal(weightDataRequest(weightDataMetadata({ port: 4321, token: "ab".repeat(16), conn: "kept" }, policy))!.conn, "kept");
  assert.throws(bad("rlmesh-weight-data-conn", "reuse"), /metadata rlmesh-weight-data-conn: must be "keep" or "kept", got "reuse"/);
  // Direct pushes are offered only with a kept connection; the worker greets "RLWD" only then.
  const keepDirect = weightDataMetadata({ port: 4321, token: "ab".repeat(16), conn: "keep", direct: true }, policy);
  assert.equal(weightDataRequest(keepDirect)!.direct, true);
  assert.equal(weightDataRequest(weightDataMetadata({ port: 4321, token: "ab".repeat(16), direct: true }, policy))!.direct, undefined);
  assert.throws(bad("rlmesh-weight-direct", "yes"), /metadata rlmesh-weight-direct: must be "1", got "yes"/);
});

/** A TCP proxy in front of `port` that passes bytes both ways as they come, flipping the server's byte number `flipAt.at` (counted over the connection). */
async function streamingProxy(port: number, flipAt: { at: number }): Promise<number> {
  const server: Server = createServer((down: Socket) => {
    const up = connect(port, "127.0.0.1");
    let seen = 0;
    down.on("data", (d) => up.write(d));
    up.on("data", (d: Buffer) => {
      const i = flipAt.at - seen;
      if (i >= 0 && i < d.length) d[i] = d[i]! ^ 0x01;
      seen += d.length;
      down.write(d);
    });
    up.on("end", () => down.end());
    up.on("error", () => down.destroy());
    down.on("error", () => up.destroy());
    down.on("close", () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return (server.address() as { port: number }).port;
}

/** Bytes of one payload on the wire: header, data, a digest per segment. */
const wireBytes = (p: WeightDataPayload) =>
  p.head.length + p.totalBytes + tensors().reduce((a, t) => a + Math.ceil(tensorToBytes(t).length / SEG), 0) * 4;

/** The test tensors with the float32 ones scaled (each version's bytes differ). */
const scaled = (k: number) => tensors().map((t) => (t.dtype === "DTYPE_FLOAT32" ? { ...t, data: (t.data as Float32Array).map((x) => x * k) } : t));
const v = (version: number, k = 1) => new WeightDataPayload({ jobId: "job-x", version }, scaled(k), { segmentBytes: SEG });

/**
 * A data server and a receiver that keeps its connections (closed after the test); `at` receives
 * an offer's payload of job-x `version`, the call saying `conn`.
 */
async function keptPair(t: TestContext) {
  const server = await dataServer();
  const receiver = new WeightDataReceiver();
  t.after(() => receiver.close());
  const at = (o: { port: number; token: string }, version: number, conn: "keep" | "kept") =>
    receiver.receive({ host: "127.0.0.1", port: o.port, token: o.token, expect: { jobId: "job-x", version }, conn });
  return { server, receiver, at };
}

test("a kept connection carries the next versions at once, whether the payload or the call comes first", async (t) => {
  const { server, receiver, at } = await keptPair(t);
  // The first push opens the connection ("keep"); both ends keep it.
  const o1 = await server.offer(v(1), { key: "w0" });
  assert.equal(o1.conn, "keep");
  assert.equal((await at(o1, 1, "keep")).version, 1);
  o1.cancel();
  assert.ok(o1.times().greeted !== undefined);
  assert.deepEqual([server.keptKeys(), receiver.size()], [["w0"], 1]);
  // The payload is sent at once on it and arrives before the call asks for it.
  const o2 = await server.offer(v(2, 2), { key: "w0" });
  assert.equal(o2.conn, "kept");
  await o2.done;
  const got2 = await at(o2, 2, "kept");
  o2.cancel();
  assert.equal(got2.version, 2);
  assert.equal(weightsChecksum(got2.tensors), weightsChecksum(scaled(2)));
  assert.equal(o2.times().greeted, undefined, "no new connection");
  // The call asks first, the payload follows.
  const o3 = await server.offer(v(3, 3), { key: "w0" });
  const got3 = await at(o3, 3, "kept");
  o3.cancel();
  assert.deepEqual([got3.version, o3.times().greeted], [3, undefined]);
  assert.equal(weightsChecksum(got3.tensors), weightsChecksum(scaled(3)));
  // A payload no call claims is dropped when the next one starts on the connection (not held 10 s).
  const lost = await server.offer(v(4, 4), { key: "w0" });
  await lost.done;
  const deadline = Date.now() + 5000;
  while (receiver.unclaimed() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(receiver.unclaimed(), 1, "read, waiting for its call");
  lost.cancel();
  const o5 = await server.offer(v(5, 5), { key: "w0" });
  assert.equal(o5.conn, "kept");
  const got5 = await at(o5, 5, "kept");
  o5.cancel();
  assert.deepEqual([got5.version, receiver.unclaimed()], [5, 0]);
  assert.equal(weightsChecksum(got5.tensors), weightsChecksum(scaled(5)));
  // Another key (another worker) has no kept connection: a new one.
  const o6 = await server.offer(v(6), { key: "w1" });
  assert.equal(o6.conn, "keep");
  o6.cancel();
  // A server that does not keep connections ends each one: the receiver's is dropped.
  const plain = new WeightDataServer("127.0.0.1", 0, false);
  servers.push(plain);
  const o7 = await plain.offer(v(7), { key: "w0" });
  assert.equal((await at(o7, 7, "keep")).version, 7);
  o7.cancel();
  assert.deepEqual(plain.keptKeys(), []);
});

test("a kept connection that is gone: the call connects anew with its token; a payload of another version on it is refused", async (t) => {
  const { server, receiver, at } = await keptPair(t);
  const o1 = await server.offer(v(1), { key: "w0" });
  await at(o1, 1, "keep");
  o1.cancel();
  // The worker lost it (closed on its side): the kept payload fails to arrive, the token is presented on a new connection.
  receiver.close();
  const o2 = await server.offer(v(2), { key: "w0" });
  assert.equal(o2.conn, "kept");
  assert.equal((await at(o2, 2, "kept")).version, 2);
  o2.cancel();
  assert.ok(o2.times().greeted !== undefined, "a new connection");
  assert.deepEqual([server.keptKeys(), receiver.size()], [["w0"], 1], "the new one is kept instead");
  // Data of version 4 for a call announcing version 3, on the kept connection (the payload written before the call asks).
  const o3 = await server.offer(v(4), { key: "w0" });
  await o3.done;
  await assert.rejects(at(o3, 3, "kept"), /data header is for job job-x v4, but the call announced job job-x v3/);
  o3.cancel();
  // Again, on whichever connection it comes (the failure dropped the kept one).
  const o4 = await server.offer(v(6), { key: "w0" });
  await assert.rejects(at(o4, 5, "kept"), /data header is for job job-x v6, but the call announced job job-x v5/);
  o4.cancel();
});

test("a corrupted byte on a kept connection fails that push naming the tensor; the connection is dropped and the next push connects anew", async (t) => {
  const { server, receiver } = await keptPair(t);
  const flip = { at: -1 };
  const port = await streamingProxy(await server.start(), flip);
  const at = (o: { token: string }, version: number, conn: "keep" | "kept") =>
    receiver.receive({ host: "127.0.0.1", port, token: o.token, expect: { jobId: "job-x", version }, conn });
  const o1 = await server.offer(v(1), { key: "w0" });
  await at(o1, 1, "keep");
  o1.cancel();
  // The second payload on the connection: after the first, "RLWP" + token, its header, w.a (32 + 4), then w.b's byte 100.
  const p2 = v(2);
  flip.at = wireBytes(v(1)) + 4 + 32 + p2.head.length + 32 + 4 + 100;
  const o2 = await server.offer(p2, { key: "w0" });
  assert.equal(o2.conn, "kept");
  await assert.rejects(at(o2, 2, "kept"), (err: Error) => {
    assert.ok(err instanceof WeightStreamError);
    assert.match(err.message, /tensor w\.b: bytes \[0, 4096\) fail the crc32 check/);
    return true;
  });
  o2.cancel();
  assert.equal(receiver.size(), 0, "the connection is dropped");
  const o3 = await server.offer(v(3), { key: "w0" });
  assert.equal((await at(o3, 3, o3.conn!)).version, 3);
  o3.cancel();
  assert.ok(o3.times().greeted !== undefined, "over a new connection");
});

test("direct pushes: a receiver that applies versions takes the next ones on its kept connection without a call and replies there; an apply error is the reply's; a corrupted one gets no reply and drops the connection", async (t) => {
  const { server, receiver } = await keptPair(t);
  const flip = { at: -1 };
  const port = await streamingProxy(await server.start(), flip);
  const applied: { version: number; sum: string }[] = [];
  const apply: DirectApply = async (got) => {
    if (got.version === 3) throw new Error("engine: tensor w.b has shape [3, 1500], the session wants [3, 1501]");
    applied.push({ version: got.version, sum: weightsChecksum(got.tensors) });
    return { accepted: true, version: got.version, jobId: got.jobId, message: "ok", bytesReceived: got.received, swapSeconds: 0.001 };
  };
  // The first version comes with a call ("keep"), as always; its caller applies it, not the receiver.
  const o1 = await server.offer(v(1), { key: "w0" });
  assert.equal((await receiver.receive({ host: "127.0.0.1", port, token: o1.token, expect: { jobId: "job-x", version: 1 }, conn: "keep", direct: apply })).version, 1);
  o1.cancel();
  assert.equal(applied.length, 0);
  // Version 2: on the kept connection alone, applied by the receiver, the reply on the connection.
  const d2 = server.pushDirect(v(2, 2), "w0", 5000)!;
  assert.ok(d2, "the receiver greeted RLWD: direct pushes go");
  assert.equal(server.pushDirect(v(9), "w0", 5000), undefined, "busy until the reply: a second one is not sent beside it");
  assert.deepEqual(await d2.reply, { accepted: true, version: 2, jobId: "job-x", message: "ok", bytesReceived: v(2).totalBytes, swapSeconds: 0.001 });
  assert.ok(d2.written() !== undefined);
  assert.deepEqual(applied, [{ version: 2, sum: weightsChecksum(scaled(2)) }]);
  // An apply that throws: the reply carries the error (not a lost push), the connection goes on.
  await assert.rejects(server.pushDirect(v(3, 3), "w0", 5000)!.reply, (err: Error) => {
    assert.ok(!(err instanceof DirectPushLost));
    assert.match(err.message, /^engine: tensor w\.b has shape \[3, 1500\], the session wants \[3, 1501\]$/);
    return true;
  });
  assert.equal((await server.pushDirect(v(4, 4), "w0", 5000)!.reply).version, 4);
  assert.deepEqual(
    applied.map((a) => a.version),
    [2, 4],
  );
  // Version 5 with w.b's byte 100 flipped on the way ("RLWQ" + 32, its header, w.a (32 + 4 digest)):
  // no reply (DirectPushLost: push it with a call), nothing applied, the connection dropped at both ends.
  const p5 = v(5, 5);
  flip.at = wireBytes(v(1)) + 3 * (4 + 32 + wireBytes(v(1))) + 4 + 32 + p5.head.length + 32 + 4 + 100;
  await assert.rejects(server.pushDirect(p5, "w0", 5000)!.reply, (err: Error) => err instanceof DirectPushLost);
  assert.deepEqual(
    applied.map((a) => a.version),
    [2, 4],
  );
  const deadline = Date.now() + 5000;
  while ((receiver.size() > 0 || server.keptKeys().length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual([receiver.size(), server.keptKeys()], [0, []]);
  assert.equal(server.pushDirect(v(5, 5), "w0", 5000), undefined, "no kept connection: the next version goes with a call");
  // A receiver that keeps its connection but did not ask for direct pushes ("RLWK") is never sent one.
  const o6 = await server.offer(v(6), { key: "w1" });
  assert.equal((await receiver.receive({ host: "127.0.0.1", port: o6.port, token: o6.token, expect: { jobId: "job-x", version: 6 }, conn: "keep" })).version, 6);
  o6.cancel();
  assert.deepEqual(server.keptKeys(), ["w1"]);
  assert.equal(server.pushDirect(v(7), "w1", 5000), undefined);
});

/**
 * A receiver by hand on `server`'s kept connection for `key`: greets "RLWD", reads (and drops)
 * whatever comes, and writes what the test says.
 */
async function handDirectReceiver(server: WeightDataServer, key: string): Promise<Socket> {
  const o = await server.offer(v(1), { key });
  assert.equal(o.conn, "keep");
  const sock = connect(o.port, "127.0.0.1");
  servers.push({ close: () => sock.destroy() });
  sock.on("data", () => undefined);
  await new Promise((r) => sock.once("connect", r));
  sock.write(Buffer.concat([Buffer.from("RLWD", "ascii"), Buffer.from(o.token, "latin1")]));
  const deadline = Date.now() + 5000;
  while (!server.keptKeys().includes(key) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  o.cancel();
  assert.deepEqual(server.keptKeys(), [key]);
  return sock;
}

const ackFrame = (json: string) => {
  const body = Buffer.from(json, "utf8");
  const head = Buffer.alloc(8);
  head.write("RLWA", 0, "ascii");
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
};

test("direct pushes and a bad or silent worker: a reply that is not an object is a lost push (not a crash), no reply after RLWH fails the push without a second try", async () => {
  const server = await dataServer();
  let sock = await handDirectReceiver(server, "w0");
  // "null" is JSON but no reply: the push is lost (the pusher sends it with a call), the connection dropped.
  const d1 = server.pushDirect(v(2), "w0", 5000)!;
  sock.write(Buffer.concat([Buffer.from("RLWH", "ascii"), ackFrame("null")]));
  await assert.rejects(d1.reply, (err: Error) => err instanceof DirectPushLost && /the worker's reply is not a JSON object/.test(err.message));
  // The worker said RLWH, then nothing: the push fails after its deadline (no second try: the worker may be installing it).
  const deadline = Date.now() + 5000;
  while (server.keptKeys().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  sock = await handDirectReceiver(server, "w0");
  const d2 = server.pushDirect(v(3), "w0", 300)!;
  sock.write("RLWH");
  await assert.rejects(d2.reply, (err: Error) => !(err instanceof DirectPushLost) && /^weights: no reply from the worker within 300 ms of its taking the push$/.test(err.message));
});

test("two pushes at once to one worker: neither cuts the other's payload; one kept connection is left and carries the next push", async (t) => {
  const { server, receiver } = await keptPair(t);
  const at = (o: { port: number; token: string; conn: "keep" | "kept" | undefined }, p: WeightDataPayload) =>
    receiver.receive({ host: "127.0.0.1", port: o.port, token: o.token, expect: p.policy, conn: o.conn });
  // A large version (32 MiB: written over many event-loop turns) beside a small one.
  const bigTensors = (version: number): HostTensor[] => [{ name: "w", dtype: "DTYPE_FLOAT32", shape: [8 << 20], data: new Float32Array(8 << 20).fill(version) }];
  const big = (version: number) => new WeightDataPayload({ jobId: "job-x", version }, bigTensors(version));
  const small = (version: number) => v(version, version);
  /** The checksum of what was received, or of what version `n` (big or small) was made of. */
  const sum = (r: { tensors: HostTensor[] } | WeightDataPayload) =>
    weightsChecksum(r instanceof WeightDataPayload ? (r.totalBytes > 1 << 20 ? bigTensors(r.policy.version) : scaled(r.policy.version)) : r.tensors);

  // No kept connection yet: both open one ("keep"); only one is kept afterwards, the other ended after its payload.
  const [a1, a2] = [await server.offer(big(1), { key: "w0" }), await server.offer(small(2), { key: "w0" })];
  assert.deepEqual([a1.conn, a2.conn], ["keep", "keep"]);
  const [g1, g2] = await Promise.all([at(a1, big(1)), at(a2, small(2))]);
  a1.cancel();
  a2.cancel();
  assert.deepEqual([g1.version, sum(g1), g2.version, sum(g2)], [1, sum(big(1)), 2, sum(small(2))]);
  assert.deepEqual(server.keptKeys(), ["w0"]);
  const deadline = Date.now() + 5000;
  while (receiver.size() !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(receiver.size(), 1, "the connection the server did not keep is closed at the worker too");

  // The kept connection carries a large payload; a second push meanwhile goes on a connection of its own.
  const b1 = await server.offer(big(3), { key: "w0" });
  const b2 = await server.offer(small(4), { key: "w0" });
  assert.deepEqual([b1.conn, b2.conn], ["kept", undefined], "the busy kept connection is not offered again");
  const [h2, h1] = await Promise.all([at(b2, small(4)), at(b1, big(3))]);
  b2.cancel();
  b1.cancel();
  assert.deepEqual([h1.version, sum(h1), h2.version, sum(h2)], [3, sum(big(3)), 4, sum(small(4))]);
  assert.deepEqual([b1.times().greeted, b2.times().greeted !== undefined], [undefined, true], "the large one stayed on the kept connection");
  assert.deepEqual([server.keptKeys(), receiver.size()], [["w0"], 1]);

  // And again the other way round: the small one on the kept connection, the large one beside it.
  const c1 = await server.offer(small(5), { key: "w0" });
  const c2 = await server.offer(big(6), { key: "w0" });
  assert.deepEqual([c1.conn, c2.conn], ["kept", undefined]);
  const [i1, i2] = await Promise.all([at(c1, small(5)), at(c2, big(6))]);
  c1.cancel();
  c2.cancel();
  assert.deepEqual([i1.version, sum(i1), i2.version, sum(i2)], [5, sum(small(5)), 6, sum(big(6))]);
  // The kept connection is still there and idle: the next push goes on it, no new connection.
  const d = await server.offer(small(7), { key: "w0" });
  assert.equal(d.conn, "kept");
  assert.equal((await at(d, small(7))).version, 7);
  d.cancel();
  assert.equal(d.times().greeted, undefined);
});

test("kept data connections have TCP keepalive on at both ends (ss shows the keepalive timer)", async (t) => {
  const ss = spawnSync("ss", ["-V"]);
  assert.ifError(ss.error); // iproute2 is a setup.sh package: its absence is a setup failure, not a pass
  const { server, receiver, at } = await keptPair(t);
  const o = await server.offer(v(1), { key: "w0" });
  await at(o, 1, "keep");
  o.cancel();
  assert.deepEqual([server.keptKeys(), receiver.size()], [["w0"], 1]);
  const out = spawnSync("ss", ["-tnoH", "state", "established", `( sport = :${o.port} or dport = :${o.port} )`], { encoding: "utf8" });
  const lines = out.stdout.trim().split("\n").filter(Boolean);
  assert.equal(lines.length, 2, `both ends of the kept connection:\n${out.stdout}`);
  for (const line of lines) assert.match(line, /timer:\(keepalive,/, `keepalive on: ${line}`);
  // Within KEEPALIVE_IDLE_MS of idle time (ss prints what is left, e.g. "9.9sec" or "9sec").
  for (const line of lines) {
    const left = /timer:\(keepalive,(?:(\d+)min)?([\d.]+)?(m?s)?(?:ec)?,/.exec(line);
    assert.ok(left, line);
    const ms = Number(left[1] ?? 0) * 60_000 + Number(left[2] ?? 0) * (left[3] === "ms" ? 1 : 1000);
    assert.ok(ms <= KEEPALIVE_IDLE_MS, `${line}: ${ms} ms left > ${KEEPALIVE_IDLE_MS}`);
  }
});

test("the table CRC-32 (for Node without zlib.crc32) equals zlib's; peer strings give their host", () => {
  const data = randomBytes(100_003);
  const z = (zlib as { crc32?: (b: Uint8Array, v?: number) => number }).crc32;
  const byTable = crc32ByTable(data.subarray(50_000), crc32ByTable(data.subarray(0, 50_000), 0));
  assert.equal(crc32ByTable(Buffer.from("123456789"), 0), 0xcbf43926, "the CRC-32 check value");
  if (z) assert.equal(byTable, z(data));
  assert.equal(peerHost("127.0.0.1:5000"), "127.0.0.1");
  assert.equal(peerHost("::1:5000"), "::1");
  assert.equal(peerHost("[::ffff:10.0.0.2]:80"), "::ffff:10.0.0.2");
});

test("the payload's segments are views of the tensors (no copy) and its header lists them by name", () => {
  const ts = tensors();
  const payload = new WeightDataPayload(policy, ts, { segmentBytes: SEG });
  const json = JSON.parse(payload.head.subarray(8).toString("utf8")) as { tensors: { name: string }[]; totalBytes: number };
  assert.deepEqual(
    json.tensors.map((t) => t.name),
    ["w.a", "w.b", "w.empty", "w.h"],
  );
  assert.equal(json.totalBytes, ts.reduce((a, t) => a + tensorToBytes(t).length, 0));
  assert.throws(() => new WeightDataPayload(policy, ts, { segmentBytes: 10 }), /segmentBytes: must be an integer in \[4096/);
});
