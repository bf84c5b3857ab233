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
 *    not zero-filled, no copy in JavaScript), checks every digest as it arrives, and answers the
 *    gRPC call.
 *
 * Kept connections: when the call's metadata says "keep" (rlmesh-weight-data-conn), the worker
 * greets with "RLWK" instead, the pusher leaves the connection open after the payload and both
 * ends keep it (the pusher by the worker's address, the worker by the pusher's host and data
 * port). The next push to that worker writes "RLWP" + a new one-time token and the payload on it
 * at once, beside a call that says "kept" and names that token: no connecting back, no greeting
 * round trip. The worker reads a payload that comes before its call and keeps it for
 * DATA_CONNECT_TIMEOUT_MS for the call to claim (or until the next payload starts on the
 * connection); the call's token and version must match it. The
 * token is offered for a new connection too: a worker that lost the kept connection (or whose
 * payload does not start on it within DATA_CONNECT_TIMEOUT_MS) connects anew and presents it.
 * A payload that fails a check on a kept connection fails its call and drops the connection.
 * Both ends set TCP keepalive on data connections (KEEPALIVE_IDLE_MS idle before the first probe).
 *
 * One kept connection per worker at the pusher, and it is never replaced or cut while a payload is
 * being written on it: a push to a worker whose kept connection is busy (two pushes at once, as at
 * a job switch) goes on a connection for that push only (no "keep"/"kept" in its call), and a
 * "keep" connection that completes while the worker has a live kept one is ended after its payload
 * instead of kept. The worker keeps every "keep" connection until the pusher closes it (several
 * for a moment when two pushes opened one each) and looks a "kept" call's token up on all of them.
 *
 * Direct pushes (no call): when the call's metadata offers them (rlmesh-weight-direct: 1, from a
 * pusher whose data server takes them), a worker that applies versions itself (receiveUpdateWeights'
 * `direct`: the rollout worker installs them into its session) greets a "keep" connection with
 * "RLWD" instead of "RLWK" (an older pusher never sees "RLWD"). Later versions for that worker go on the kept connection alone: "RLWQ" + 32 filler
 * bytes and the payload, no UpdateWeights call. The worker answers "RLWH" as soon as the push
 * starts to arrive (a kept connection that a middlebox dropped silently is noticed within
 * DATA_CONNECT_TIMEOUT_MS, not at the push's deadline), reads and checks it as above, applies
 * it as the call would (the same policy rule: only a newer version of the same job, or another
 * job's), and answers on the same connection: "RLWA", a u32 (little-endian) length and a JSON
 * reply (accepted, version, jobId, message, bytesReceived, swapSeconds; or error). This saves
 * the call's round trips (the call's headers reaching the worker, the reply's frames coming back),
 * which are most of a small version's push. A payload that fails a check drops the connection
 * without a reply; when the connection closes, or no "RLWH" comes, the pusher pushes that version
 * with a call on a new connection (a worker that installed it, or is installing it, answers that
 * it serves it). No reply within the push's deadline after "RLWH" fails that worker's push, as a
 * call's deadline would (no second try). The connection was opened by the worker,
 * with the one-time token of a call it had accepted, so only that pusher can push on it.
 *
 * A worker that does not know the transport answers the empty stream with INVALID_ARGUMENT, and
 * one that cannot reach the data port with FAILED_PRECONDITION; in both cases it did not get the
 * payload (it never connected; for FAILED_PRECONDITION, also when the payload went on a kept
 * connection that the worker no longer has), and the pusher sends that worker the version as
 * chunks on the stream instead.
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
/**
 * "keep": the data server keeps the connection the worker opens for this push (the worker greets
 * with "RLWK" and keeps it too); "kept": this push's bytes come on the connection kept from an
 * earlier push, sent at once beside the call. Absent: a connection for this push only.
 */
export const WEIGHT_DATA_CONN_MD = "rlmesh-weight-data-conn";
/** "1": the pusher takes direct pushes' greetings ("RLWD") on the connection this call opens or uses. */
export const WEIGHT_DIRECT_MD = "rlmesh-weight-direct";
export type WeightDataConn = "keep" | "kept";

/** Bytes of tensor data between two digests. */
export const DEFAULT_SEGMENT_BYTES = 4 << 20;
const MIN_SEGMENT_BYTES = 4096;
const MAX_SEGMENT_BYTES = 256 << 20;
/** Largest header the receiver reads (names, dtypes and shapes of every tensor). */
export const MAX_HEADER_BYTES = 16 << 20;
/** How long the receiver waits to connect, and the data server for a receiver's token. */
export const DATA_CONNECT_TIMEOUT_MS = 10_000;
/**
 * TCP keepalive on data connections, both ends: idle time before the first probe (setKeepAlive).
 * Node 20's libuv sets only this (TCP_KEEPIDLE); the probe interval and count are the kernel's
 * (Linux defaults 75 s × 9), so a peer whose host died unannounced is noticed that much later.
 */
export const KEEPALIVE_IDLE_MS = 10_000;
/** Kept connections a receiver holds per data server at most (the pusher keeps one; more only for a moment). */
export const MAX_KEPT_PER_SERVER = 4;

const HELLO = Buffer.from("RLWR", "ascii");
/** The receiver's greeting when it will keep the connection for later pushes. */
const HELLO_KEEP = Buffer.from("RLWK", "ascii");
/** The receiver's greeting when it will keep the connection and take direct pushes on it. */
const HELLO_DIRECT = Buffer.from("RLWD", "ascii");
/** Starts a payload on a kept connection, followed by the call's token. */
const PUSH = Buffer.from("RLWP", "ascii");
/** Starts a direct push (no call) on a kept connection, followed by TOKEN_HEX filler bytes. */
const DIRECT = Buffer.from("RLWQ", "ascii");
/** The receiver's word that a direct push is starting to arrive (sent on its first bytes). */
const HEARD = Buffer.from("RLWH", "ascii");
/** The receiver's reply to a direct push: "RLWA", u32 LE length, JSON. */
const ACK = Buffer.from("RLWA", "ascii");
/** Largest reply the pusher reads. */
const MAX_ACK_BYTES = 64 << 10;
const MAGIC = Buffer.from("RLW1", "ascii");
const TOKEN_HEX = 32;
const DIRECT_START = Buffer.concat([DIRECT, Buffer.alloc(TOKEN_HEX, 0x30)]);

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
    this.head = jsonFrame(MAGIC, header);
    this.running = runningDigest(this.digest);
    this.running.update(this.head.subarray(8));
  }

  /** The running digest after segment i (segments are digested once, in order). */
  private digestAfter(i: number): Buffer {
    while (this.digests.length <= i) {
      this.running.update(this.segments[this.digests.length]!);
      this.digests.push(this.running.value());
    }
    return this.digests[i]!;
  }

  /**
   * Writes the whole version to `sock` (header, segments, digests), leaving it open (the caller
   * ends it, or keeps it for the next versions). `onQueued` is called once every byte is handed to
   * the socket, before waiting for it to drain.
   */
  async writeTo(sock: Socket, onQueued: () => void): Promise<void> {
    // Each segment goes to the socket before its digest is computed (by the first connection to
    // send it), and that digest goes out with the next segment in one write: the receiver reads
    // and checks segment i while segment i's digest is computed here.
    let ok = sock.write(this.head);
    let digest: Buffer | undefined;
    for (let i = 0; i < this.segments.length; i++) {
      if (!ok) await drained(sock);
      if (digest) {
        sock.cork();
        sock.write(digest);
        ok = sock.write(this.segments[i]!);
        sock.uncork();
      } else ok = sock.write(this.segments[i]!);
      digest = this.digestAfter(i);
    }
    if (digest) {
      if (!ok) await drained(sock);
      ok = sock.write(digest);
    }
    // Every byte is handed to the socket (the receiver may have them all before the drain below).
    onQueued();
    if (!ok) await drained(sock);
  }
}

/** `magic` (4 bytes), a u32 (little-endian) length and `value` as JSON: a payload's header, a direct push's reply. */
function jsonFrame(magic: Buffer, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), "utf8");
  const out = Buffer.allocUnsafe(8 + json.length);
  magic.copy(out, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, 8);
  return out;
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

/** One payload waiting for the receiver that presents its token (or sent on its kept connection). */
export interface WeightDataOffer {
  token: string;
  port: number;
  /**
   * What the call's metadata must say (rlmesh-weight-data-conn): "kept" (the payload goes on the
   * receiver's kept connection, opened for an earlier push, starting now, without waiting for the
   * receiver), "keep" (the server keeps the connection the receiver opens), or undefined
   * (a connection for this push only: the server does not keep connections, no key was given, or
   * the key's kept connection is busy with another push's payload).
   */
  conn: WeightDataConn | undefined;
  /** The call offers direct pushes (WEIGHT_DIRECT_MD): the server takes "RLWD" on the connection the call opens or uses. */
  direct: boolean;
  /**
   * True once the receiver opened a new connection and presented the token (it took this payload
   * there, or is taking it). A receiver that answers without having done so, and whose payload
   * did not come on a kept connection, did not get it.
   */
  connectedAnew(): boolean;
  /** performance.now() when the receiver presented the token (a new connection), and when the payload was written (undefined before). */
  times(): { greeted?: number; written?: number };
  /** Settles when the payload is written (or could not be); never rejects unhandled. */
  done: Promise<void>;
  /**
   * Withdraws the offer (and drops its connection unless it is kept, complete, for the next push).
   * `dropKept`: the call failed, so the kept connection the payload went on is in an unknown state
   * (the receiver may no longer have it): it is not used again, and is ended (once the payload
   * being written on it, if any, is queued).
   */
  cancel(opts?: { dropKept?: boolean }): void;
}

/**
 * The pusher's reader of a direct-push connection's replies: one expected at a time (next()), any
 * other byte from the receiver is a protocol error that drops the connection.
 */
class AckReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter:
    | { resolve(r: DirectPushReply): void; reject(err: Error): void; timer: NodeJS.Timeout | undefined; heard: boolean; timeoutMs: number }
    | undefined;

  constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      try {
        this.onData(d);
      } catch (err) {
        // Whatever the receiver sent, it must not throw out of a socket listener (the pusher's process).
        this.fail(new DirectPushLost(`the worker's reply could not be read: ${(err as Error).message}`));
        this.sock.destroy();
      }
    });
    sock.on("close", () => this.fail(new DirectPushLost("the data connection closed before the worker's reply")));
  }

  /**
   * The reply to the direct push about to be written. Rejects with DirectPushLost (and drops the
   * connection) when the connection closes first, or the receiver does not say "RLWH" within
   * DATA_CONNECT_TIMEOUT_MS of sent() (the push's start reached the kernel: a backlog of another
   * payload queued before it does not count); with a plain Error (the push failed, no second try)
   * when no reply comes within `timeoutMs` of "RLWH".
   */
  next(timeoutMs: number): Promise<DirectPushReply> {
    if (this.waiter) return Promise.reject(new Error("AckReader: a reply is awaited already"));
    return new Promise<DirectPushReply>((resolve, reject) => {
      this.waiter = { resolve, reject, timer: undefined, heard: false, timeoutMs };
    });
  }

  /** The push's start went out: the wait for "RLWH" begins. */
  sent(): void {
    const w = this.waiter;
    if (!w || w.heard || w.timer) return;
    w.timer = this.timeout(() => new DirectPushLost(`no word from the worker within ${DATA_CONNECT_TIMEOUT_MS} ms`), DATA_CONNECT_TIMEOUT_MS);
  }

  private timeout(err: () => Error, ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.fail(err());
      this.sock.destroy();
    }, ms);
  }

  private fail(err: Error): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (!w) return;
    clearTimeout(w.timer);
    w.reject(err);
  }

  private onData(d: Buffer): void {
    const bad = (why: string) => {
      this.fail(new DirectPushLost(`the worker's reply ${why}`));
      this.sock.destroy();
    };
    if (!this.waiter) return bad("came when none was awaited");
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    if (!this.waiter.heard) {
      if (this.buf.length < HEARD.length) return;
      if (!this.buf.subarray(0, HEARD.length).equals(HEARD)) return bad("does not start with RLWH");
      this.buf = this.buf.subarray(HEARD.length);
      clearTimeout(this.waiter.timer);
      this.waiter.heard = true;
      const ms = this.waiter.timeoutMs;
      this.waiter.timer = this.timeout(() => new Error(`weights: no reply from the worker within ${ms} ms of its taking the push`), ms);
    }
    if (this.buf.length < 8) return;
    if (!this.buf.subarray(0, ACK.length).equals(ACK)) return bad("has a bad magic");
    const len = this.buf.readUInt32LE(4);
    if (len > MAX_ACK_BYTES) return bad(`is ${len} bytes (at most ${MAX_ACK_BYTES})`);
    if (this.buf.length < 8 + len) return;
    if (this.buf.length > 8 + len) return bad("is followed by more bytes");
    let r: Partial<DirectPushReply> & { error?: unknown };
    try {
      r = JSON.parse(this.buf.subarray(8).toString("utf8")) as typeof r;
    } catch {
      return bad("is not JSON");
    }
    if (typeof r !== "object" || r === null || Array.isArray(r)) return bad("is not a JSON object");
    const { error, accepted, version, jobId } = r;
    if (typeof error !== "string" && (typeof accepted !== "boolean" || typeof version !== "number" || typeof jobId !== "string")) return bad("lacks accepted, version or jobId");
    this.buf = Buffer.alloc(0);
    const w = this.waiter;
    this.waiter = undefined;
    clearTimeout(w.timer);
    if (typeof error === "string") return w.reject(new Error(error));
    w.resolve({
      accepted: accepted!,
      version: version!,
      jobId: jobId!,
      message: String(r.message ?? ""),
      bytesReceived: Number(r.bytesReceived ?? 0),
      swapSeconds: Number(r.swapSeconds ?? 0),
    });
  }
}

/** A direct push under way (WeightDataServer.pushDirect). */
export interface DirectPush {
  /** The worker's reply; DirectPushLost when none came (push the version with a call). */
  reply: Promise<DirectPushReply>;
  /** performance.now() when the payload was handed to the socket (undefined before). */
  written(): number | undefined;
}

/** A receiver's connection kept open after a push, for the next ones. */
interface KeptSocket {
  /** The key (worker address) it is filed under. */
  key: string;
  sock: Socket;
  /** A payload is being written on it. */
  busy: boolean;
  /** Not to be used again: ended once its payload (if busy) is queued. */
  retired: boolean;
  /** The receiver takes direct pushes on it (it greeted with "RLWD"): their replies. */
  acks: AckReader | undefined;
}

/** Ends `sock` after what is queued on it, and destroys it if that does not finish in time. */
function endSoon(sock: Socket): void {
  sock.end();
  setTimeout(() => sock.destroy(), DATA_CONNECT_TIMEOUT_MS).unref();
}

/**
 * The pusher's end: a TCP server that hands each offered payload to the one receiver presenting
 * the offer's token, once. Unknown tokens, bad greetings and greetings that do not come within
 * DATA_CONNECT_TIMEOUT_MS are dropped.
 *
 * Kept connections (`keep`, the default): a receiver that greets with "RLWK" instead of "RLWR"
 * (the call's metadata told it that this server keeps connections) keeps the connection open
 * after the payload; the server files it under the offer's key (the worker's address). The next
 * offer for that key writes "RLWP" + its token and the payload on that connection at once,
 * concurrently with the call, instead of waiting for the receiver to connect back. The token is
 * also offered as usual: a receiver that lost the kept connection connects anew and presents it
 * (the kept connection, in an unknown state, is then dropped).
 */
export class WeightDataServer {
  private server: Server | undefined;
  private starting: Promise<number> | undefined;
  private readonly pending = new Map<string, (sock: Socket, keep: "keep" | "direct" | undefined) => void>();
  private readonly kept = new Map<string, KeptSocket>();

  constructor(
    private readonly host = "127.0.0.1",
    private readonly port = 0,
    /** Keep receivers' connections between pushes (receivers that ask to). */
    readonly keep = true,
    /** Offer direct pushes to receivers that take them (kept connections only). */
    readonly direct = true,
  ) {}

  /** Listens (once); resolves to the port. */
  start(): Promise<number> {
    this.starting ??= new Promise<number>((resolve, reject) => {
      const server = createServer({ noDelay: true }, (sock) => {
        sock.setKeepAlive(true, KEEPALIVE_IDLE_MS);
        this.greet(sock);
      });
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

  /** Keys (worker addresses) with a kept connection. */
  keptKeys(): string[] {
    return [...this.kept.keys()];
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
      const hello = got.subarray(0, HELLO.length);
      const keep = hello.equals(HELLO_DIRECT) ? (this.direct ? "direct" : "keep") : hello.equals(HELLO_KEEP) ? "keep" : undefined;
      const take = this.pending.get(token);
      if (got.length !== HELLO.length + TOKEN_HEX || !(keep || hello.equals(HELLO)) || !take) return void sock.destroy();
      this.pending.delete(token);
      sock.pause();
      take(sock, keep);
    };
    sock.on("data", onData);
  }

  /**
   * Files `sock` (its payload queued) as `key`'s kept connection; false (not kept) when `key` has
   * a live kept connection already, which is never replaced: it may be carrying another push's
   * payload right now.
   */
  private adopt(key: string, sock: Socket, acks: AckReader | undefined): boolean {
    const old = this.kept.get(key);
    if (old && old.sock !== sock && !old.sock.destroyed) return false;
    const k: KeptSocket = { key, sock, busy: false, retired: false, acks };
    this.kept.set(key, k);
    sock.once("close", () => {
      if (this.kept.get(key) === k) this.kept.delete(key);
    });
    return true;
  }

  /** `k` is not used again: ended now, or once the payload being written on it is queued. */
  private retire(k: KeptSocket): void {
    if (this.kept.get(k.key) === k) this.kept.delete(k.key);
    if (k.retired) return;
    k.retired = true;
    if (!k.busy) endSoon(k.sock);
  }

  /**
   * Offers `payload` to the receiver that presents the returned token; with `key` (the worker's
   * address) and a kept connection for it that is idle, also writes it there right away. When
   * that connection is busy (another push's payload is being written on it), the offer is for a
   * connection for this push only.
   */
  async offer(payload: WeightDataPayload, opts: { key?: string } = {}): Promise<WeightDataOffer> {
    const port = await this.start();
    const token = randomBytes(TOKEN_HEX / 2).toString("hex");
    const live = this.keep && opts.key !== undefined ? this.kept.get(opts.key) : undefined;
    const k = live && !live.sock.destroyed ? live : undefined;
    // Busy: this push goes on its own connection, which is neither kept nor replaces that one.
    const keepAs = this.keep && !k?.busy ? opts.key : undefined;
    // An idle kept connection: this payload goes on it.
    const kept = keepAs !== undefined ? k : undefined;
    let fresh: Socket | undefined;
    let adopted = false;
    let keptWritten = false;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const times: { greeted?: number; written?: number } = {};
    this.pending.set(token, (s, keepHello) => {
      fresh = s;
      times.greeted = performance.now();
      // The receiver connected anew although the payload went on its kept connection: it lost
      // that connection (or gave up on it), whose state is unknown now. Cut off if this payload
      // is still being written on it (no other push's is); otherwise not used again.
      if (kept) {
        if (!keptWritten) kept.sock.destroy();
        else this.retire(kept);
      }
      // Anything the receiver sends after its greeting, but the replies to direct pushes (if it
      // takes them), is a protocol error; its close ends the offer.
      const acks = keepHello === "direct" ? new AckReader(s) : undefined;
      if (!acks) s.on("data", () => s.destroy());
      s.on("close", settle);
      // Kept once every byte is queued: the call's reply (and cancel()) can come before the drain.
      // Not kept (ended after its payload) when the worker has a live kept connection already.
      const onQueued = () => {
        if (keepHello && keepAs !== undefined && !s.destroyed) adopted = this.adopt(keepAs, s, acks);
      };
      payload.writeTo(s, onQueued).then(
        () => {
          times.written = performance.now();
          if (adopted) settle();
          else s.end();
        },
        () => s.destroy(),
      );
      s.resume();
    });
    if (kept) {
      kept.busy = true;
      const sock = kept.sock;
      // After this turn: the caller starts the call first, so both travel at once.
      setImmediate(() => {
        if (sock.destroyed) {
          kept.busy = false;
          if (!fresh) settle();
          return;
        }
        sock.write(Buffer.concat([PUSH, Buffer.from(token, "latin1")]));
        // Complete once every byte is queued (the next payload may follow it on the stream).
        const onQueued = () => {
          keptWritten = true;
          kept.busy = false;
          if (kept.retired) endSoon(sock);
        };
        payload.writeTo(sock, onQueued).then(
          () => {
            times.written = performance.now();
            settle();
          },
          () => {
            sock.destroy();
            if (!fresh) settle();
          },
        );
      });
    }
    return {
      token,
      port,
      conn: kept ? "kept" : keepAs !== undefined ? "keep" : undefined,
      direct: this.direct && (kept !== undefined || keepAs !== undefined),
      connectedAnew: () => fresh !== undefined,
      times: () => times,
      done,
      cancel: (o = {}) => {
        this.pending.delete(token);
        if (fresh && !adopted) fresh.destroy();
        // A payload cut off mid-way leaves the kept connection in an unknown state (this offer's
        // payload is the only one on it while it is being written).
        if (kept && !keptWritten) kept.sock.destroy();
        else if (kept && o.dropKept) this.retire(kept);
        if (!fresh && !kept) settle();
      },
    };
  }

  /**
   * Writes `payload` as a direct push (no call) on `key`'s kept connection when it is idle and its
   * receiver takes direct pushes; undefined otherwise (push with a call). The connection is busy
   * until the reply comes; one that gives none in `timeoutMs` is dropped.
   */
  pushDirect(payload: WeightDataPayload, key: string, timeoutMs: number): DirectPush | undefined {
    const k = this.keep ? this.kept.get(key) : undefined;
    if (!k?.acks || k.busy || k.retired || k.sock.destroyed) return undefined;
    k.busy = true;
    let written: number | undefined;
    const reply = k.acks.next(timeoutMs).finally(() => {
      k.busy = false;
      if (k.retired) endSoon(k.sock);
    });
    k.sock.write(DIRECT_START, () => k.acks!.sent());
    payload.writeTo(k.sock, () => undefined).then(
      () => void (written = performance.now()),
      () => k.sock.destroy(),
    );
    return { reply, written: () => written };
  }

  close(): void {
    for (const token of [...this.pending.keys()]) this.pending.delete(token);
    for (const k of this.kept.values()) k.sock.destroy();
    this.kept.clear();
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

/** A worker's reply to a direct push: UpdateWeights' reply fields. */
export interface DirectPushReply {
  accepted: boolean;
  version: number;
  jobId: string;
  message: string;
  bytesReceived: number;
  swapSeconds: number;
}

/**
 * Applies a version that came as a direct push, as the worker's UpdateWeights would after
 * receiving it (`startedAt`: performance.now() when its first bytes came). What it throws goes
 * back as the reply's error.
 */
export type DirectApply = (got: ReceivedWeights, startedAt: number) => Promise<DirectPushReply>;

/** A direct push got no reply (the connection closed, the reply was malformed or late): push that version with a call instead. */
export class DirectPushLost extends Error {
  override name = "DirectPushLost";
}

/** The receiver could not open the data connection (nothing was received). */
export class WeightDataConnectError extends Error {
  override name = "WeightDataConnectError";
}

const DTYPE_NAMES = new Set<string>(Object.keys(DTYPES).filter((d) => d !== "DTYPE_UNSPECIFIED"));

function parseHeader(json: Buffer, expect: PolicyRef | undefined): Header {
  let h: Header;
  try {
    h = JSON.parse(json.toString("utf8")) as Header;
  } catch (err) {
    throw new WeightStreamError(`data header: not JSON (${(err as Error).message})`);
  }
  if (typeof h !== "object" || h === null || h.v !== 1) throw new WeightStreamError(`data header: unknown version ${JSON.stringify(h?.v)}`);
  if (expect) checkPolicy(h, expect);
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

/** The data must be of the version the call announced. */
function checkPolicy(h: Pick<Header, "jobId" | "version">, expect: PolicyRef): void {
  if (h.jobId !== expect.jobId || h.version !== expect.version)
    throw new WeightStreamError(
      `data header is for ${formatPolicy({ jobId: String(h.jobId), version: Number(h.version) })}, but the call announced ${formatPolicy(expect)}`,
    );
}

/** Where a socket's reads go: the buffer the next read fills, and what to do with `n` bytes read into it (throws on a bad stream). */
interface ReadTarget {
  buffer(): Uint8Array;
  read(n: number, buf: Uint8Array): void;
}

/**
 * One version's "RLW1" stream (magic, header, segments and digests), read straight into each
 * tensor's memory (one allocation per tensor) as the bytes arrive, every digest checked. The
 * policy the call announced may come after the header (a kept connection's payload can arrive
 * before its call): `announce` checks it then.
 */
class FrameReader implements ReadTarget {
  state: "preamble" | "header" | "data" | "digest" | "done" = "preamble";
  private small = Buffer.alloc(8);
  private smallFilled = 0;
  private header: Header | undefined;
  private digest: RunningDigest | undefined;
  private readonly tensors: HostTensor[] = [];
  private ti = -1;
  private bytes = new Uint8Array(0);
  private off = 0;
  private segEnd = 0;
  private segStart = 0;
  /** Tensor bytes received so far. */
  received = 0;

  constructor(private expect?: PolicyRef) {}

  /** The policy the call announced (throws if the header, already read, is of another). */
  announce(expect: PolicyRef): void {
    this.expect = expect;
    if (this.header) checkPolicy(this.header, expect);
  }

  get totalBytes(): number | undefined {
    return this.header?.totalBytes;
  }

  result(): ReceivedWeights {
    return { version: this.header!.version, jobId: this.header!.jobId, tensors: this.tensors, received: this.received };
  }

  /** Moves to the next tensor with bytes (allocating it), or to done. */
  private nextTensor(): void {
    const h = this.header!;
    for (this.ti++; this.ti < h.tensors.length; this.ti++) {
      const t = h.tensors[this.ti]!;
      const size = numElements(t.shape) * bytesPerElement(t.dtype);
      try {
        // Not zero-filled (a memset of the whole version otherwise): every byte is written by the
        // stream before the version can be returned, and a failed stream's tensors are dropped.
        const b = Buffer.allocUnsafeSlow(size);
        this.bytes = new Uint8Array(b.buffer, b.byteOffset, size);
      } catch (err) {
        throw new WeightStreamError(`tensor ${t.name}: cannot allocate ${size} bytes (${(err as Error).message})`);
      }
      this.tensors.push(tensorOverBytes(t.name, t.dtype, [...t.shape], this.bytes));
      if (size > 0) {
        this.off = 0;
        this.segStart = 0;
        this.segEnd = Math.min(size, h.segmentBytes);
        this.state = "data";
        return;
      }
    }
    this.state = "done";
  }

  buffer(): Uint8Array {
    if (this.state === "data") return this.bytes.subarray(this.off, this.segEnd);
    if (this.state === "done") throw new Error("FrameReader: read past the end");
    return this.small.subarray(this.smallFilled);
  }

  read(n: number, buf: Uint8Array): void {
    switch (this.state) {
      case "preamble":
      case "header":
      case "digest": {
        this.smallFilled += n;
        if (this.smallFilled < this.small.length) return;
        if (this.state === "preamble") {
          if (!this.small.subarray(0, 4).equals(MAGIC)) throw new WeightStreamError("data connection: not a tcp-v1 weight stream (bad magic)");
          const len = this.small.readUInt32LE(4);
          if (len === 0 || len > MAX_HEADER_BYTES) throw new WeightStreamError(`data header: ${len} bytes (at most ${MAX_HEADER_BYTES})`);
          this.small = Buffer.alloc(len);
          this.smallFilled = 0;
          this.state = "header";
        } else if (this.state === "header") {
          this.header = parseHeader(this.small, this.expect);
          this.digest = runningDigest(this.header.digest);
          this.digest.update(this.small);
          this.small = Buffer.alloc(DIGEST_BYTES[this.header.digest]);
          this.smallFilled = 0;
          this.nextTensor();
        } else {
          const want = this.digest!.value();
          if (!want.equals(this.small)) {
            const t = this.header!.tensors[this.ti]!;
            throw new WeightStreamError(
              `tensor ${t.name}: bytes [${this.segStart}, ${this.off}) fail the ${this.header!.digest} check (sent ${this.small.toString("hex")}, received data gives ${want.toString("hex")}): corrupted, reordered or lost on the way`,
            );
          }
          this.smallFilled = 0;
          if (this.off < this.bytes.length) {
            this.segStart = this.off;
            this.segEnd = Math.min(this.bytes.length, this.off + this.header!.segmentBytes);
            this.state = "data";
          } else this.nextTensor();
        }
        return;
      }
      case "data":
        this.digest!.update(buf.subarray(0, n));
        this.off += n;
        this.received += n;
        if (this.off === this.segEnd) this.state = "digest";
        return;
      case "done":
        throw new WeightStreamError(`data connection: more bytes than the header's total_bytes=${this.header!.totalBytes}`);
    }
  }
}

/**
 * Connects a socket whose reads go to `target.current` (swappable: a kept connection's reader
 * takes over from the first payload's): Node's `onread`, so the kernel copies straight into the
 * target's buffer. A read the target refuses (throws) goes to `onError`.
 */
function connectReading(host: string, port: number, target: { current: ReadTarget }, onError: (err: Error) => void): Socket {
  const sock = connect({
    host,
    port,
    noDelay: true,
    onread: {
      buffer: () => target.current.buffer(),
      callback: (n: number, buf: Uint8Array) => {
        try {
          target.current.read(n, buf);
        } catch (err) {
          onError(err as Error);
          return false;
        }
        return true;
      },
    },
  });
  // Applied once connected.
  sock.setKeepAlive(true, KEEPALIVE_IDLE_MS);
  return sock;
}

/**
 * The worker's end: connects to the pusher's data server, presents the token and reads the
 * version announced by the call (`expect`) straight into each tensor's memory, checking every
 * digest. Rejects with WeightDataConnectError when it cannot connect, WeightStreamError when the
 * stream is malformed, truncated, corrupted or of another version.
 *
 * With `keep` (the server keeps connections: the call said so), it greets with "RLWK", resolves
 * as soon as the last digest checks out (the server leaves the connection open) and hands the
 * connection to `keep` for the next pushes.
 */
export function receiveWeightData(opts: {
  host: string;
  port: number;
  token: string;
  expect: PolicyRef;
  signal?: AbortSignal;
  keep?: (sock: Socket, target: { current: ReadTarget }) => void;
  /** With keep: the receiver takes direct pushes on the kept connection (it greets with "RLWD"). */
  direct?: boolean;
}): Promise<ReceivedWeights> {
  return new Promise<ReceivedWeights>((resolve, reject) => {
    const frame = new FrameReader(opts.expect);
    const spare = new Uint8Array(64);
    let connected = false;
    let settled = false;
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
    const finish = () => {
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
      resolve(frame.result());
    };
    const target: { current: ReadTarget } = {
      current: {
        buffer: () => (frame.state === "done" ? spare : frame.buffer()),
        read: (n, buf) => {
          if (settled) throw new WeightStreamError("data connection: settled");
          frame.read(n, buf);
          if (frame.state === "done" && opts.keep) {
            finish();
            sock.off("error", onError);
            sock.off("end", onEnd);
            opts.keep(sock, target);
          }
        },
      },
    };
    // A refused read: this receive fails, or (once kept) the kept connection closes.
    const sock = connectReading(opts.host, opts.port, target, (err) => {
      fail(err);
      sock.destroy();
    });
    sock.once("connect", () => {
      connected = true;
      clearTimeout(connectTimer);
      sock.write(Buffer.concat([opts.keep ? (opts.direct ? HELLO_DIRECT : HELLO_KEEP) : HELLO, Buffer.from(opts.token, "latin1")]));
    });
    const onError = (err: Error) => {
      clearTimeout(connectTimer);
      if (!connected) fail(new WeightDataConnectError(`cannot open the data connection to ${opts.host}:${opts.port}: ${err.message}`));
      else fail(new WeightStreamError(`data connection lost after ${frame.received} of ${frame.totalBytes ?? "?"} bytes: ${err.message}`));
    };
    sock.on("error", onError);
    const onEnd = () => {
      if (frame.state !== "done")
        return fail(
          new WeightStreamError(
            frame.totalBytes !== undefined
              ? `data connection ended after ${frame.received} of ${frame.totalBytes} bytes (truncated)`
              : "data connection ended before the header",
          ),
        );
      if (settled) return;
      sock.end();
      finish();
    };
    sock.on("end", onEnd);
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener("abort", onAbort);
  });
}

/** A call waiting for its payload on a kept connection. */
interface Waiter {
  expect: PolicyRef;
  /** null: the payload will not come on a kept connection (connect anew with the token). */
  resolve(r: ReceivedWeights | null): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * A receiver's kept connections to one data server and the calls waiting for payloads on them.
 * The server keeps one per worker; more than one only for a moment (two pushes that each opened
 * one, the server ends all but one after its payload). A "kept" call's payload may come on any.
 */
class KeptGroup {
  readonly conns = new Set<KeptConnection>();
  readonly waiters = new Map<string, Waiter>();
  /** Payloads read before their call: claimable for DATA_CONNECT_TIMEOUT_MS, or until the next payload starts on the connection that carried them. */
  readonly arrived = new Map<string, { result: ReceivedWeights; timer: NodeJS.Timeout; conn: KeptConnection }>();

  constructor(private readonly onEmpty: () => void) {}

  add(c: KeptConnection): void {
    this.conns.add(c);
    if (this.conns.size <= MAX_KEPT_PER_SERVER) return;
    // More than the server would keep: the oldest one not carrying a payload goes (or this one).
    const idle = [...this.conns].find((x) => !x.receiving());
    (idle ?? c).close();
  }

  /** Drops a payload that was read and not claimed. */
  dropArrived(token: string): void {
    const a = this.arrived.get(token);
    if (!a) return;
    clearTimeout(a.timer);
    this.arrived.delete(token);
    this.maybeEmpty();
  }

  /** The call waiting for `token`'s payload, taken off the waiting list. */
  take(token: string): Waiter | undefined {
    const w = this.waiters.get(token);
    this.waiters.delete(token);
    return w;
  }

  /** `c` closed: the call whose payload was coming on it, and every waiting call if no connection is left, connect anew. */
  removed(c: KeptConnection, receivingToken: string | undefined): void {
    this.conns.delete(c);
    if (receivingToken !== undefined) this.take(receivingToken)?.resolve(null);
    if (this.conns.size === 0) {
      const ws = [...this.waiters.values()];
      this.waiters.clear();
      for (const w of ws) w.resolve(null);
    }
    this.maybeEmpty();
  }

  maybeEmpty(): void {
    if (this.conns.size === 0 && this.waiters.size === 0 && this.arrived.size === 0) this.onEmpty();
  }

  /** The payload of `token`, checked against `expect`; null when it will not come on a kept connection. */
  claim(token: string, expect: PolicyRef, signal?: AbortSignal): Promise<ReceivedWeights | null> {
    const got = this.arrived.get(token);
    if (got) {
      this.dropArrived(token);
      try {
        checkPolicy(got.result, expect);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      return Promise.resolve(got.result);
    }
    if (this.conns.size === 0) return Promise.resolve(null);
    return new Promise<ReceivedWeights | null>((resolve, reject) => {
      const onAbort = () => {
        if (this.waiters.get(token) === w) this.waiters.delete(token);
        wrappedReject(new WeightStreamError("data connection cancelled"));
      };
      const cleanup = () => {
        clearTimeout(w.timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const wrappedReject = (err: Error) => {
        cleanup();
        reject(err);
      };
      const w: Waiter = {
        expect,
        resolve: (r) => {
          cleanup();
          resolve(r);
        },
        reject: wrappedReject,
        timer: setTimeout(() => {
          if (this.waiters.get(token) === w) this.waiters.delete(token);
          w.resolve(null);
        }, DATA_CONNECT_TIMEOUT_MS),
      };
      const carrier = [...this.conns].find((c) => c.receivingToken() === token);
      if (carrier) {
        // Its payload is arriving: the header, if read, must be the announced version.
        clearTimeout(w.timer);
        try {
          carrier.announce(expect);
        } catch (err) {
          carrier.close();
          return wrappedReject(err as Error);
        }
      }
      this.waiters.set(token, w);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort);
    });
  }

  close(): void {
    for (const c of [...this.conns]) c.close();
    for (const token of [...this.arrived.keys()]) this.dropArrived(token);
  }
}

/**
 * The receiver's side of a kept connection: "RLWP" + token, then a version's stream, again and
 * again. A payload may arrive before its call (both are sent at once): it is read anyway and kept
 * (in its group) for DATA_CONNECT_TIMEOUT_MS for its call to claim it, or until the next payload
 * starts on this connection. A bad stream fails the call it belongs to and drops the connection; a
 * connection that closes makes the call whose payload it was carrying connect anew (and every
 * waiting call, when it was the group's last), as does a payload that does not start within
 * DATA_CONNECT_TIMEOUT_MS (the server offers every token both ways).
 */
class KeptConnection implements ReadTarget {
  private readonly prefix = Buffer.alloc(PUSH.length + TOKEN_HEX);
  private filled = 0;
  /** The payload being read: a call's (its token) or a direct push's (no token). */
  private frame: { token: string | undefined; reader: FrameReader; startedAt: number } | undefined;
  closed = false;

  constructor(
    private readonly sock: Socket,
    target: { current: ReadTarget },
    private readonly group: KeptGroup,
    /** Applies direct pushes (the worker greeted with "RLWD"); undefined: it takes none. */
    private readonly apply?: DirectApply,
  ) {
    target.current = this;
    sock.on("error", () => this.close());
    sock.on("end", () => this.close());
    sock.on("close", () => this.close());
    // Kept for later pushes only: it must not hold the process open.
    sock.unref();
  }

  /** Whether a payload is being read on it. */
  receiving(): boolean {
    return this.frame !== undefined;
  }

  /** The token of the payload being read (undefined between payloads). */
  receivingToken(): string | undefined {
    return this.frame?.token;
  }

  /** The call of the payload being read announced `expect` (throws if its header, already read, is of another). */
  announce(expect: PolicyRef): void {
    this.frame?.reader.announce(expect);
  }

  buffer(): Uint8Array {
    return this.frame ? this.frame.reader.buffer() : this.prefix.subarray(this.filled);
  }

  read(n: number, buf: Uint8Array): void {
    const g = this.group;
    if (!this.frame) {
      this.filled += n;
      if (this.filled < this.prefix.length) return;
      this.filled = 0;
      const magic = this.prefix.subarray(0, PUSH.length);
      const direct = magic.equals(DIRECT);
      if (direct && !this.apply) throw new WeightStreamError("kept data connection: a direct push, but this receiver did not ask for them");
      if (!direct && !magic.equals(PUSH)) throw new WeightStreamError("kept data connection: not a payload's start (bad magic)");
      // A new payload means the pusher is done with this connection's earlier ones (one push at a
      // time per connection): one that no call claimed is dropped now rather than held (a whole version).
      for (const [t, a] of [...g.arrived]) if (a.conn === this) g.dropArrived(t);
      const startedAt = performance.now();
      if (direct) {
        this.sock.write(HEARD);
        this.frame = { token: undefined, reader: new FrameReader(), startedAt };
        return;
      }
      const token = this.prefix.subarray(PUSH.length).toString("latin1");
      const w = g.waiters.get(token);
      if (w) clearTimeout(w.timer);
      this.frame = { token, reader: new FrameReader(w?.expect), startedAt };
      return;
    }
    const { token, reader, startedAt } = this.frame;
    try {
      reader.read(n, buf);
    } catch (err) {
      // The call fails with the reason; the connection, in an unknown state now, is dropped (a
      // direct push's pusher sees it close and pushes that version with a call).
      if (token !== undefined) g.take(token)?.reject(err as Error);
      this.close();
      throw err;
    }
    if (reader.state !== "done") return;
    this.frame = undefined;
    if (token === undefined) return void this.answer(reader.result(), startedAt);
    const w = g.take(token);
    if (w) w.resolve(reader.result());
    else {
      const timer = setTimeout(() => g.dropArrived(token), DATA_CONNECT_TIMEOUT_MS);
      timer.unref();
      g.arrived.set(token, { result: reader.result(), timer, conn: this });
    }
  }

  /** Applies a direct push's version and writes the reply (or the error) on this connection. */
  private async answer(got: ReceivedWeights, startedAt: number): Promise<void> {
    let reply: DirectPushReply | { error: string };
    try {
      reply = await this.apply!(got, startedAt);
    } catch (err) {
      reply = { error: err instanceof Error ? err.message : String(err) };
    }
    if (!this.closed) this.sock.write(jsonFrame(ACK, reply));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    const receiving = this.frame?.token;
    this.frame = undefined;
    this.group.removed(this, receiving);
  }
}

/**
 * A worker's data connections kept open between pushes, by pusher data server (the host the call
 * came from and the port it named).
 */
export class WeightDataReceiver {
  private readonly groups = new Map<string, KeptGroup>();

  private group(key: string): KeptGroup {
    let g = this.groups.get(key);
    if (!g) {
      const created: KeptGroup = new KeptGroup(() => {
        if (this.groups.get(key) === created) this.groups.delete(key);
      });
      g = created;
      this.groups.set(key, g);
    }
    return g;
  }

  /**
   * One push's payload: on a kept connection when the call says it went there ("kept"),
   * otherwise (or when it does not come there) over a new connection presenting the token, which
   * is kept afterwards if the server keeps connections ("keep" or "kept").
   */
  async receive(opts: {
    host: string;
    port: number;
    token: string;
    expect: PolicyRef;
    conn?: WeightDataConn;
    signal?: AbortSignal;
    /** Take direct pushes on the connection this call's payload comes on, if it is kept, and apply them so. */
    direct?: DirectApply;
  }): Promise<ReceivedWeights> {
    const key = `${opts.host}|${opts.port}`;
    if (opts.conn === "kept") {
      const got = await this.groups.get(key)?.claim(opts.token, opts.expect, opts.signal);
      if (got) return got;
    }
    return receiveWeightData({
      ...opts,
      keep: opts.conn
        ? (sock, target) => {
            const g = this.group(key);
            g.add(new KeptConnection(sock, target, g, opts.direct));
          }
        : undefined,
      direct: opts.direct !== undefined,
    });
  }

  /** How many kept connections there are. */
  size(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.conns.size;
    return n;
  }

  /** Payloads read on kept connections that no call has claimed yet. */
  unclaimed(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.arrived.size;
    return n;
  }

  close(): void {
    for (const g of [...this.groups.values()]) g.close();
  }
}

/** The receiver of this process's UpdateWeights calls. */
export const weightDataReceiver = new WeightDataReceiver();

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
export function weightDataRequest(md: grpc.Metadata): { port: number; token: string; expect: PolicyRef; conn?: WeightDataConn; direct?: true } | null {
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
  const conn = mdString(md, WEIGHT_DATA_CONN_MD);
  if (conn !== undefined && conn !== "keep" && conn !== "kept")
    throw new WeightStreamError(`metadata ${WEIGHT_DATA_CONN_MD}: must be "keep" or "kept", got "${conn}"`);
  const direct = mdString(md, WEIGHT_DIRECT_MD);
  if (direct !== undefined && direct !== "1") throw new WeightStreamError(`metadata ${WEIGHT_DIRECT_MD}: must be "1", got "${direct}"`);
  return { port, token, expect: { jobId, version }, ...(conn ? { conn } : {}), ...(direct && conn ? { direct: true as const } : {}) };
}

/** The metadata of a tcp-v1 UpdateWeights call. */
export function weightDataMetadata(offer: Pick<WeightDataOffer, "port" | "token"> & { conn?: WeightDataConn; direct?: boolean }, policy: PolicyRef): grpc.Metadata {
  const md = new grpc.Metadata();
  if (offer.conn) md.set(WEIGHT_DATA_CONN_MD, offer.conn);
  if (offer.conn && offer.direct) md.set(WEIGHT_DIRECT_MD, "1");
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
export async function receiveUpdateWeights(
  call: grpc.ServerReadableStream<WeightChunk, unknown>,
  receiver: WeightDataReceiver = weightDataReceiver,
  /** Applies later versions pushed directly on the data connection this call opens and keeps (see "Direct pushes"). */
  direct?: DirectApply,
): Promise<ReceivedWeights> {
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
    // Events, not `for await`: ending an async iteration destroys the stream with an AbortError
    // (a stack trace per push).
    const streamEmpty = new Promise<void>((resolve, reject) => {
      call.on("data", (chunk: WeightChunk) =>
        reject(new WeightStreamError(`a ${TCP_V1} push carries its bytes on the data connection, but a chunk (tensor ${chunk.tensorName}) came on the stream`)),
      );
      call.on("end", resolve);
      call.on("error", reject);
    });
    // Direct pushes only when the pusher offers them (an older one would drop an "RLWD" greeting).
    const data = receiver.receive({ host: peerHost(call.getPeer()), ...req, signal: abort.signal, direct: req.direct ? direct : undefined });
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
