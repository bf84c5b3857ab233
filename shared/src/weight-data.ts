import { connect, createServer, type Server, type Socket } from "node:net";
import { createHash, randomBytes, type Hash } from "node:crypto";
import * as zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { DType as DTYPES } from "./gen/rlmesh/v1/DType.js";
import { GrpcError } from "./grpc/errors.js";
import { bytesPerElement, numElements, tensorOverBytes, tensorToBytes, type DType, type HostTensor } from "./tensor.js";
import type { WeightChunk } from "./types.js";
import { formatPolicy, WeightAssembler, WeightStreamError, type PolicyRef } from "./weights.js";

/*
 * The tcp-v1 weight data connection: an UpdateWeights push whose tensor bytes travel on a plain
 * TCP connection beside the gRPC call instead of as protobuf chunks inside it.
 *
 * 1. The pusher opens UpdateWeights with the metadata below (transport, the port of its data
 *    server, a one-time token, the policy) and half-closes the stream without sending a message.
 * 2. The worker connects to that port at the gRPC peer's address and presents the token
 *    ("RLWR" + 32 hex characters).
 * 3. The pusher writes "RLW1", a u32 (little-endian) header length, the header (JSON: job,
 *    version, total bytes, digest, segment size, the tensors' names, dtypes and shapes in name
 *    order), then every tensor's bytes in header order, cut into segments of at most
 *    segment_bytes, each followed by the digest of everything so far (header included): a running
 *    CRC-32 (zlib's, 4 bytes big-endian) or a running sha256 (32 bytes). It then closes its side.
 * 4. The worker reads each segment straight into the tensor's memory (one allocation per tensor,
 *    no copy in JavaScript), checks every digest as it arrives, and answers the gRPC call.
 *
 * A worker that does not know the transport answers the empty stream with INVALID_ARGUMENT, and
 * one that cannot reach the data port with FAILED_PRECONDITION; in both cases it never connected,
 * and the pusher sends that worker the version as chunks on the stream instead.
 *
 * The digests are error checks (a wrong, lost, repeated, reordered or extra byte anywhere fails
 * the next one), not authentication, like the sha256 of a chunked stream.
 */

export const WEIGHT_TRANSPORT_MD = "rlmesh-weight-transport";
export const WEIGHT_DATA_PORT_MD = "rlmesh-weight-data-port";
export const WEIGHT_DATA_TOKEN_MD = "rlmesh-weight-data-token";
export const WEIGHT_JOB_MD = "rlmesh-weight-job";
export const WEIGHT_VERSION_MD = "rlmesh-weight-version";
export const TCP_V1 = "tcp-v1";

/** Bytes of tensor data between two digests. */
export const DEFAULT_SEGMENT_BYTES = 4 << 20;
const MIN_SEGMENT_BYTES = 4096;
const MAX_SEGMENT_BYTES = 256 << 20;
/** Largest header the receiver reads (names, dtypes and shapes of every tensor). */
export const MAX_HEADER_BYTES = 16 << 20;
/** How long the receiver waits to connect, and the data server for a receiver's token. */
export const DATA_CONNECT_TIMEOUT_MS = 10_000;

const HELLO = Buffer.from("RLWR", "ascii");
const MAGIC = Buffer.from("RLW1", "ascii");
const TOKEN_HEX = 32;

export type WeightDataDigest = "crc32" | "sha256";
const DIGEST_BYTES: Record<WeightDataDigest, number> = { crc32: 4, sha256: 32 };

/** A digest of everything fed so far, readable at any point. */
interface RunningDigest {
  update(b: Uint8Array): void;
  value(): Buffer;
}

/** zlib.crc32 (Node ≥ 20.15), or the same CRC-32 by table where it is missing. */
const crc32Update: (b: Uint8Array, crc: number) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === "function"
    ? (b, crc) => (zlib as unknown as { crc32(b: Uint8Array, v: number): number }).crc32(b, crc)
    : crc32ByTable;

let crcTable: Uint32Array | undefined;
/** CRC-32 (IEEE 802.3, reflected, as zlib) continued from `crc`. */
export function crc32ByTable(b: Uint8Array, crc: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < b.length; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function runningDigest(kind: WeightDataDigest): RunningDigest {
  if (kind === "sha256") {
    const h: Hash = createHash("sha256");
    return { update: (b) => h.update(b), value: () => h.copy().digest() };
  }
  let crc = 0;
  return {
    update: (b) => {
      crc = crc32Update(b, crc);
    },
    value: () => {
      const out = Buffer.allocUnsafe(4);
      out.writeUInt32BE(crc >>> 0, 0);
      return out;
    },
  };
}

interface HeaderTensor {
  name: string;
  dtype: DType;
  shape: number[];
}

interface Header {
  v: 1;
  jobId: string;
  version: number;
  totalBytes: number;
  digest: WeightDataDigest;
  segmentBytes: number;
  tensors: HeaderTensor[];
}

/**
 * One weight version laid out for the data connection, shared by every worker's connection: the
 * header is built once and each segment's digest is computed once, by the first connection that
 * sends it. Segments are views of the tensors' memory (no copy).
 */
export class WeightDataPayload {
  /** "RLW1" + u32 length + the header's JSON. */
  readonly head: Buffer;
  readonly totalBytes: number;
  readonly digest: WeightDataDigest;
  private readonly segments: Uint8Array[] = [];
  private readonly digests: Buffer[] = [];
  private readonly running: RunningDigest;

  constructor(
    readonly policy: PolicyRef,
    tensors: readonly HostTensor[],
    opts: { digest?: WeightDataDigest; segmentBytes?: number } = {},
  ) {
    this.digest = opts.digest ?? "crc32";
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES || segmentBytes > MAX_SEGMENT_BYTES)
      throw new RangeError(`segmentBytes: must be an integer in [${MIN_SEGMENT_BYTES}, ${MAX_SEGMENT_BYTES}], got ${segmentBytes}`);
    const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let total = 0;
    for (const t of sorted) {
      const bytes = tensorToBytes(t);
      total += bytes.length;
      for (let off = 0; off < bytes.length; off += segmentBytes) this.segments.push(bytes.subarray(off, off + segmentBytes));
    }
    this.totalBytes = total;
    const header: Header = {
      v: 1,
      jobId: policy.jobId,
      version: policy.version,
      totalBytes: total,
      digest: this.digest,
      segmentBytes,
      tensors: sorted.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
    };
    const json = Buffer.from(JSON.stringify(header), "utf8");
    this.head = Buffer.allocUnsafe(8 + json.length);
    MAGIC.copy(this.head, 0);
    this.head.writeUInt32LE(json.length, 4);
    json.copy(this.head, 8);
    this.running = runningDigest(this.digest);
    this.running.update(json);
  }

  /** The running digest after segment i (segments are digested once, in order). */
  private digestAfter(i: number): Buffer {
    while (this.digests.length <= i) {
      this.running.update(this.segments[this.digests.length]!);
      this.digests.push(this.running.value());
    }
    return this.digests[i]!;
  }

  /** Writes the whole version to `sock` (header, segments, digests) and ends it. */
  async writeTo(sock: Socket): Promise<void> {
    let ok = sock.write(this.head);
    for (let i = 0; i < this.segments.length; i++) {
      if (!ok) await drained(sock);
      const d = this.digestAfter(i);
      sock.cork();
      sock.write(this.segments[i]!);
      ok = sock.write(d);
      sock.uncork();
    }
    if (!ok) await drained(sock);
    sock.end();
  }
}

function drained(sock: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      sock.off("drain", onDrain);
      sock.off("close", onClose);
      sock.off("error", done);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error("data connection closed by the receiver"));
    sock.on("drain", onDrain);
    sock.on("close", onClose);
    sock.on("error", done);
  });
}

/** One payload waiting for the receiver that presents its token. */
export interface WeightDataOffer {
  token: string;
  port: number;
  /** True once the receiver connected and presented the token. */
  connected(): boolean;
  /** Settles when the payload is written (or could not be); never rejects unhandled. */
  done: Promise<void>;
  /** Withdraws the offer (and drops its connection, if any). */
  cancel(): void;
}

/**
 * The pusher's end: a TCP server that hands each offered payload to the one receiver presenting
 * the offer's token, once. Unknown tokens, bad greetings and greetings that do not come within
 * DATA_CONNECT_TIMEOUT_MS are dropped.
 */
export class WeightDataServer {
  private server: Server | undefined;
  private starting: Promise<number> | undefined;
  private readonly pending = new Map<string, (sock: Socket) => void>();

  constructor(
    private readonly host = "127.0.0.1",
    private readonly port = 0,
  ) {}

  /** Listens (once); resolves to the port. */
  start(): Promise<number> {
    this.starting ??= new Promise<number>((resolve, reject) => {
      const server = createServer({ noDelay: true }, (sock) => this.greet(sock));
      server.once("error", reject);
      server.listen(this.port, this.host, () => {
        server.off("error", reject);
        server.on("error", () => undefined);
        this.server = server;
        const a = server.address();
        resolve(typeof a === "object" && a ? a.port : this.port);
      });
    });
    return this.starting;
  }

  private greet(sock: Socket): void {
    sock.on("error", () => undefined);
    const timer = setTimeout(() => sock.destroy(), DATA_CONNECT_TIMEOUT_MS);
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < HELLO.length + TOKEN_HEX) return;
      sock.off("data", onData);
      clearTimeout(timer);
      const token = got.subarray(HELLO.length, HELLO.length + TOKEN_HEX).toString("latin1");
      const take = this.pending.get(token);
      if (got.length !== HELLO.length + TOKEN_HEX || !got.subarray(0, HELLO.length).equals(HELLO) || !take) return void sock.destroy();
      this.pending.delete(token);
      sock.pause();
      take(sock);
    };
    sock.on("data", onData);
  }

  async offer(payload: WeightDataPayload): Promise<WeightDataOffer> {
    const port = await this.start();
    const token = randomBytes(TOKEN_HEX / 2).toString("hex");
    let sock: Socket | undefined;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    this.pending.set(token, (s) => {
      sock = s;
      // Anything the receiver sends after its greeting is a protocol error; its close ends the offer.
      s.on("data", () => s.destroy());
      s.on("close", settle);
      payload.writeTo(s).catch(() => s.destroy());
      s.resume();
    });
    return {
      token,
      port,
      connected: () => sock !== undefined,
      done,
      cancel: () => {
        this.pending.delete(token);
        if (sock) sock.destroy();
        else settle();
      },
    };
  }

  close(): void {
    for (const token of [...this.pending.keys()]) this.pending.delete(token);
    this.server?.close();
    this.server = undefined;
    this.starting = undefined;
  }
}

/** A version as received: its tensors and how many tensor bytes came. */
export interface ReceivedWeights {
  version: number;
  jobId: string;
  tensors: HostTensor[];
  received: number;
}

/** The receiver could not open the data connection (nothing was received). */
export class WeightDataConnectError extends Error {
  override name = "WeightDataConnectError";
}

const DTYPE_NAMES = new Set<string>(Object.keys(DTYPES).filter((d) => d !== "DTYPE_UNSPECIFIED"));

function parseHeader(json: Buffer, expect: PolicyRef): Header {
  let h: Header;
  try {
    h = JSON.parse(json.toString("utf8")) as Header;
  } catch (err) {
    throw new WeightStreamError(`data header: not JSON (${(err as Error).message})`);
  }
  if (typeof h !== "object" || h === null || h.v !== 1) throw new WeightStreamError(`data header: unknown version ${JSON.stringify(h?.v)}`);
  if (h.jobId !== expect.jobId || h.version !== expect.version)
    throw new WeightStreamError(
      `data header is for ${formatPolicy({ jobId: String(h.jobId), version: Number(h.version) })}, but the call announced ${formatPolicy(expect)}`,
    );
  if (h.digest !== "crc32" && h.digest !== "sha256") throw new WeightStreamError(`data header: unknown digest ${JSON.stringify(h.digest)}`);
  if (!Number.isInteger(h.segmentBytes) || h.segmentBytes < MIN_SEGMENT_BYTES || h.segmentBytes > MAX_SEGMENT_BYTES)
    throw new WeightStreamError(`data header: segment_bytes must be an integer in [${MIN_SEGMENT_BYTES}, ${MAX_SEGMENT_BYTES}], got ${h.segmentBytes}`);
  if (!Array.isArray(h.tensors) || h.tensors.length === 0) throw new WeightStreamError("data header: no tensors");
  const names = new Set<string>();
  let total = 0;
  for (const t of h.tensors) {
    if (typeof t?.name !== "string" || !t.name) throw new WeightStreamError("data header: a tensor without a name");
    if (names.has(t.name)) throw new WeightStreamError(`data header: tensor ${t.name} listed twice`);
    names.add(t.name);
    if (!DTYPE_NAMES.has(t.dtype)) throw new WeightStreamError(`tensor ${t.name}: unsupported dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new WeightStreamError(`tensor ${t.name}: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`);
    total += numElements(t.shape) * bytesPerElement(t.dtype);
  }
  if (!Number.isSafeInteger(h.totalBytes) || h.totalBytes <= 0 || total !== h.totalBytes)
    throw new WeightStreamError(`data header: total_bytes ${h.totalBytes} is not the tensors' ${total} bytes`);
  return h;
}

/**
 * The worker's end: connects to the pusher's data server, presents the token and reads the
 * version announced by the call (`expect`) straight into each tensor's memory, checking every
 * digest. Rejects with WeightDataConnectError when it cannot connect, WeightStreamError when the
 * stream is malformed, truncated, corrupted or of another version.
 */
export function receiveWeightData(opts: {
  host: string;
  port: number;
  token: string;
  expect: PolicyRef;
  signal?: AbortSignal;
}): Promise<ReceivedWeights> {
  return new Promise<ReceivedWeights>((resolve, reject) => {
    type State = "preamble" | "header" | "data" | "digest" | "done";
    let state: State = "preamble";
    let small = Buffer.alloc(8);
    let smallFilled = 0;
    let header: Header | undefined;
    let digest: RunningDigest | undefined;
    const tensors: HostTensor[] = [];
    let ti = -1;
    let bytes = new Uint8Array(0);
    let off = 0;
    let segEnd = 0;
    let segStart = 0;
    let received = 0;
    let connected = false;
    let settled = false;
    const spare = new Uint8Array(64);

    // Armed first; fail() (defined next) clears it.
    const connectTimer = setTimeout(
      () => fail(new WeightDataConnectError(`no data connection to ${opts.host}:${opts.port} within ${DATA_CONNECT_TIMEOUT_MS} ms`)),
      DATA_CONNECT_TIMEOUT_MS,
    );
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      sock.destroy();
      reject(err);
    };
    const onAbort = () => fail(new WeightStreamError("data connection cancelled"));

    /** Moves to the next tensor with bytes (allocating it), or to done. */
    const nextTensor = () => {
      const h = header!;
      for (ti++; ti < h.tensors.length; ti++) {
        const t = h.tensors[ti]!;
        const size = numElements(t.shape) * bytesPerElement(t.dtype);
        try {
          bytes = new Uint8Array(new ArrayBuffer(size));
        } catch (err) {
          throw new WeightStreamError(`tensor ${t.name}: cannot allocate ${size} bytes (${(err as Error).message})`);
        }
        tensors.push(tensorOverBytes(t.name, t.dtype, [...t.shape], bytes));
        if (size > 0) {
          off = 0;
          segStart = 0;
          segEnd = Math.min(size, h.segmentBytes);
          state = "data";
          return;
        }
      }
      state = "done";
    };

    const step = (n: number, buf: Uint8Array) => {
      switch (state) {
        case "preamble":
        case "header":
        case "digest": {
          smallFilled += n;
          if (smallFilled < small.length) return;
          if (state === "preamble") {
            if (!small.subarray(0, 4).equals(MAGIC)) throw new WeightStreamError("data connection: not a tcp-v1 weight stream (bad magic)");
            const len = small.readUInt32LE(4);
            if (len === 0 || len > MAX_HEADER_BYTES) throw new WeightStreamError(`data header: ${len} bytes (at most ${MAX_HEADER_BYTES})`);
            small = Buffer.alloc(len);
            smallFilled = 0;
            state = "header";
          } else if (state === "header") {
            header = parseHeader(small, opts.expect);
            digest = runningDigest(header.digest);
            digest.update(small);
            small = Buffer.alloc(DIGEST_BYTES[header.digest]);
            smallFilled = 0;
            nextTensor();
          } else {
            const want = digest!.value();
            if (!want.equals(small)) {
              const t = header!.tensors[ti]!;
              throw new WeightStreamError(
                `tensor ${t.name}: bytes [${segStart}, ${off}) fail the ${header!.digest} check (sent ${small.toString("hex")}, received data gives ${want.toString("hex")}): corrupted, reordered or lost on the way`,
              );
            }
            smallFilled = 0;
            if (off < bytes.length) {
              segStart = off;
              segEnd = Math.min(bytes.length, off + header!.segmentBytes);
              state = "data";
            } else nextTensor();
          }
          return;
        }
        case "data":
          digest!.update(buf.subarray(0, n));
          off += n;
          received += n;
          if (off === segEnd) state = "digest";
          return;
        case "done":
          throw new WeightStreamError(`data connection: more bytes than the header's total_bytes=${header!.totalBytes}`);
      }
    };

    const nextBuffer = (): Uint8Array => {
      switch (state) {
        case "data":
          return bytes.subarray(off, segEnd);
        case "done":
          return spare;
        default:
          return small.subarray(smallFilled);
      }
    };

    const sock = connect({
      host: opts.host,
      port: opts.port,
      noDelay: true,
      onread: {
        buffer: nextBuffer,
        callback: (n: number, buf: Uint8Array) => {
          if (settled) return false;
          try {
            step(n, buf);
          } catch (err) {
            fail(err as Error);
            return false;
          }
          return true;
        },
      },
    });
    sock.once("connect", () => {
      connected = true;
      clearTimeout(connectTimer);
      sock.write(Buffer.concat([HELLO, Buffer.from(opts.token, "latin1")]));
    });
    sock.on("error", (err) => {
      clearTimeout(connectTimer);
      if (!connected) fail(new WeightDataConnectError(`cannot open the data connection to ${opts.host}:${opts.port}: ${err.message}`));
      else fail(new WeightStreamError(`data connection lost after ${received} of ${header?.totalBytes ?? "?"} bytes: ${err.message}`));
    });
    sock.on("end", () => {
      if (state !== "done")
        return fail(
          new WeightStreamError(
            header
              ? `data connection ended after ${received} of ${header.totalBytes} bytes (truncated)`
              : "data connection ended before the header",
          ),
        );
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
      sock.end();
      resolve({ version: header!.version, jobId: header!.jobId, tensors, received });
    });
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener("abort", onAbort);
  });
}

/** The host part of grpc-js' peer string ("1.2.3.4:5", "::1:5", "[::1]:5"). */
export function peerHost(peer: string): string {
  const i = peer.lastIndexOf(":");
  const host = i > 0 ? peer.slice(0, i) : peer;
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function mdString(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return v === undefined ? undefined : String(v);
}

/** The tcp-v1 parameters of an UpdateWeights call's metadata; null for a chunked push. */
export function weightDataRequest(md: grpc.Metadata): { port: number; token: string; expect: PolicyRef } | null {
  const transport = mdString(md, WEIGHT_TRANSPORT_MD);
  if (transport === undefined) return null;
  if (transport !== TCP_V1) throw new WeightStreamError(`metadata ${WEIGHT_TRANSPORT_MD}: unknown transport "${transport}" (this worker takes ${TCP_V1})`);
  const port = Number(mdString(md, WEIGHT_DATA_PORT_MD));
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new WeightStreamError(`metadata ${WEIGHT_DATA_PORT_MD}: must be a port in [1, 65535], got ${mdString(md, WEIGHT_DATA_PORT_MD)}`);
  const token = mdString(md, WEIGHT_DATA_TOKEN_MD) ?? "";
  if (!/^[0-9a-f]{32}$/.test(token)) throw new WeightStreamError(`metadata ${WEIGHT_DATA_TOKEN_MD}: must be 32 hex characters`);
  const versionText = mdString(md, WEIGHT_VERSION_MD) ?? "";
  const version = Number(versionText);
  if (!/^\d+$/.test(versionText) || !Number.isSafeInteger(version))
    throw new WeightStreamError(`metadata ${WEIGHT_VERSION_MD}: must be a non-negative integer, got "${versionText}"`);
  let jobId: string;
  try {
    jobId = decodeURIComponent(mdString(md, WEIGHT_JOB_MD) ?? "");
  } catch {
    throw new WeightStreamError(`metadata ${WEIGHT_JOB_MD}: not URI-encoded`);
  }
  return { port, token, expect: { jobId, version } };
}

/** The metadata of a tcp-v1 UpdateWeights call. */
export function weightDataMetadata(offer: Pick<WeightDataOffer, "port" | "token">, policy: PolicyRef): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WEIGHT_TRANSPORT_MD, TCP_V1);
  md.set(WEIGHT_DATA_PORT_MD, String(offer.port));
  md.set(WEIGHT_DATA_TOKEN_MD, offer.token);
  md.set(WEIGHT_JOB_MD, encodeURIComponent(policy.jobId));
  md.set(WEIGHT_VERSION_MD, String(policy.version));
  return md;
}

/**
 * The receiving side of RolloutService.UpdateWeights, both transports: chunks on the stream
 * (WeightAssembler) or, when the call's metadata asks for tcp-v1, the data connection (the stream
 * must then stay empty). Throws WeightStreamError for a bad push, and GrpcError
 * FAILED_PRECONDITION "weights: …" when the data connection cannot be opened (the pusher then
 * sends chunks).
 */
export async function receiveUpdateWeights(call: grpc.ServerReadableStream<WeightChunk, unknown>): Promise<ReceivedWeights> {
  const req = weightDataRequest(call.metadata);
  if (!req) {
    const asm = new WeightAssembler();
    for await (const chunk of call as AsyncIterable<WeightChunk>) asm.add(chunk);
    return { ...asm.finish(), received: asm.received };
  }
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.on("cancelled", onCancel);
  try {
    const streamEmpty = (async () => {
      for await (const chunk of call as AsyncIterable<WeightChunk>)
        throw new WeightStreamError(`a ${TCP_V1} push carries its bytes on the data connection, but a chunk (tensor ${chunk.tensorName}) came on the stream`);
    })();
    const data = receiveWeightData({ host: peerHost(call.getPeer()), port: req.port, token: req.token, expect: req.expect, signal: abort.signal });
    // Whichever fails first fails the call; the other is cancelled.
    const [got] = await Promise.all([
      data,
      streamEmpty.catch((err: unknown) => {
        abort.abort();
        throw err;
      }),
    ]);
    return got;
  } catch (err) {
    if (err instanceof WeightDataConnectError) throw new GrpcError(grpc.status.FAILED_PRECONDITION, `weights: ${err.message}; push the chunks on the stream`);
    throw err;
  } finally {
    call.off("cancelled", onCancel);
  }
}
