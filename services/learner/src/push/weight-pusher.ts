import * as grpc from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import {
  ClientPool,
  chunkWeights,
  createClient,
  DEFAULT_REGISTRY_TTL_MS,
  listWorkers,
  ROLLOUT_WORKER_KIND,
  workersChangedChannel,
  loadProto,
  type HostTensor,
  type Logger,
  type ModelInfo,
  type RolloutServiceClient,
  type UpdateWeightsResponse,
  type WeightChunkIn,
  type WorkerEntry,
} from "@rlmesh/shared";
import { DirectPushLost, WeightDataPayload, WeightDataServer, weightDataMetadata, type WeightDataDigest } from "@rlmesh/shared/weight-data";
import type { PushResult } from "../learner-service.js";
import type { LearnerMetrics, PushPath } from "../learner-metrics.js";
import { acceptsPolicy, formatPolicy, type PolicyRef } from "@rlmesh/shared/weights";

/** Deadline for pushing one version to one worker, on top of its bytes at PUSH_MIN_BYTES_PER_S. */
export const PUSH_TIMEOUT_MS = 60_000;
/** The slowest transfer a push is allowed before its deadline (a 15 GB float16 7B: +12.5 min). */
export const PUSH_MIN_BYTES_PER_S = 20e6;
/** A push's time limit: a minute plus its bytes at PUSH_MIN_BYTES_PER_S, so a large model is not cut off at 60 s. */
export const pushTimeoutMs = (bytes: number): number => PUSH_TIMEOUT_MS + Math.ceil((bytes / PUSH_MIN_BYTES_PER_S) * 1000);
/** A push's deadline (pushTimeoutMs from now). */
export const pushDeadline = (bytes: number): Date => new Date(Date.now() + pushTimeoutMs(bytes));
/**
 * How long a worker that did not take the data connection (it cannot reach the learner's data
 * port, or only knows chunks) is pushed chunks directly, without offering the connection first
 * (an unreachable port would otherwise cost each push the worker's connect timeout).
 */
export const CHUNKS_ONLY_MS = 10 * 60_000;
/** How long a cached worker list is used at most (the registry's TTL: a crashed worker is gone from Redis by then). */
export const WORKER_CACHE_MS = DEFAULT_REGISTRY_TTL_MS;
/** Deadline of one worker's GetModelInfo (the model check of StartJob). */
export const MODEL_INFO_TIMEOUT_MS = 5000;

/** Encoded chunks kept for the other workers' streams at most (beyond it a chunk is encoded again). */
export const SHARED_ENCODING_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The protobuf encoding of one push's chunks, shared by its N worker streams: the first stream to
 * send a chunk encodes it and keeps the bytes for the N-1 others, dropped once they all took them
 * (grpc-js only reads a serialized message: it copies it behind the message's length prefix). A
 * worker far behind the others would make the kept bytes grow; past SHARED_ENCODING_MAX_BYTES a
 * chunk is encoded once per stream instead.
 */
class SharedEncoding {
  private readonly kept = new Map<WeightChunkIn, { bytes: Buffer; left: number }>();
  private keptBytes = 0;

  constructor(private readonly streams: number) {}

  encode(chunk: WeightChunkIn, serialize: (c: WeightChunkIn) => Buffer): Buffer {
    const hit = this.kept.get(chunk);
    if (hit) {
      if (--hit.left === 0) {
        this.kept.delete(chunk);
        this.keptBytes -= hit.bytes.length;
      }
      return hit.bytes;
    }
    const bytes = serialize(chunk);
    if (this.streams > 1 && this.keptBytes + bytes.length <= SHARED_ENCODING_MAX_BYTES) {
      this.kept.set(chunk, { bytes, left: this.streams - 1 });
      this.keptBytes += bytes.length;
    }
    return bytes;
  }
}

/** The push a chunk object belongs to (chunks of no push are encoded as usual). */
const encodingOf = new WeakMap<object, SharedEncoding>();

let sharedEncodingCtor: ReturnType<typeof loadProto>["proto"]["rlmesh"]["v1"]["RolloutService"] | undefined;

/** RolloutService's client constructor whose UpdateWeights encodes a push's chunks once (SharedEncoding). */
function sharedEncodingRolloutClient(): NonNullable<typeof sharedEncodingCtor> {
  if (!sharedEncodingCtor) {
    const { service } = loadProto().proto.rlmesh.v1.RolloutService;
    const serialize = service.UpdateWeights.requestSerialize;
    const UpdateWeights = {
      ...service.UpdateWeights,
      requestSerialize: (c: WeightChunkIn) => encodingOf.get(c)?.encode(c, serialize) ?? serialize(c),
    };
    sharedEncodingCtor = grpc.makeGenericClientConstructor({ ...service, UpdateWeights }, "RolloutService") as unknown as NonNullable<
      typeof sharedEncodingCtor
    >;
  }
  return sharedEncodingCtor;
}

/** How a push carries the tensor bytes: beside the call on a TCP connection, or as chunks in it. */
export type PushTransport = "tcp" | "grpc";
export const PUSH_TRANSPORTS: readonly PushTransport[] = ["tcp", "grpc"];

export interface WeightPusherOptions {
  /**
   * "tcp" (default): UpdateWeights negotiates a tcp-v1 data connection (shared/src/weight-data.ts)
   * and the bytes go on it; a worker that cannot take it gets chunks. "grpc": chunks on the
   * stream only (the transport before issue 17's push work).
   */
  transport?: PushTransport;
  /** Address the data server listens on (the learner's gRPC host); workers connect to it. */
  dataHost?: string;
  /** Port of the data server (0: a free one, told to each worker in the call's metadata). */
  dataPort?: number;
  /** Digest of the data connection's segments (default crc32). */
  digest?: WeightDataDigest;
  /**
   * tcp: keep each worker's data connection open between pushes and send the next version on it
   * at once, beside the call, instead of waiting for the worker to connect back (default true).
   */
  keepConnections?: boolean;
  /**
   * tcp with kept connections: send a version to a worker that takes direct pushes (a rollout
   * worker does) on its kept connection alone, without an UpdateWeights call; it answers on that
   * connection (default true). A push that gets no answer there goes again with a call.
   */
  directPushes?: boolean;
  /**
   * Keep the registered workers' list between pushes instead of a Redis lookup per push (default
   * true): dropped when a worker announces that it registered or deregistered (the registry's
   * change channel), when the subscription to it is not up, after WORKER_CACHE_MS, and after a push
   * in which a worker failed (then the list is looked up again at once, and a failed worker it no
   * longer lists is not reported). false: a lookup before every push.
   */
  cacheWorkers?: boolean;
}

/**
 * Where one push's time went, in milliseconds from the push's start (performance.now() of the
 * pushing process): `bench learner --push-only` prints the medians.
 */
export interface PushPhases {
  /** The Redis lookup of the registered workers resolved. */
  listedMs: number;
  /** Per worker pushed to. */
  workers: {
    /** The worker's id. */
    worker: string;
    /** How the version went to it (set once it did; a failed push keeps the last path tried). */
    path?: PushPath;
    /** The UpdateWeights call was started (after the payload's header and the data offer), or a direct push's first write. */
    callMs: number;
    /** tcp: the worker connected back and presented the token (undefined: no new connection). */
    greetedMs?: number;
    /** tcp: the whole payload was handed to the socket. */
    writtenMs?: number;
    /** The worker's reply came (it read, checked and installed the version): the call's, or a direct push's on the data connection. */
    replyMs: number;
  }[];
  totalMs: number;
}

/** What one push's worker calls share: the version and its two encodings, each built at most once. */
interface PushContext {
  policy: PolicyRef;
  /** The version's tensor bytes (the call's deadline). */
  bytes: number;
  /** Its chunks (the grpc transport and fallbacks), encoded once for every stream (SharedEncoding). */
  chunks(): WeightChunkIn[];
  /** Its tcp-v1 payload. */
  payload(): WeightDataPayload;
  /** performance.now() at the push's start (PushPhases). */
  t0: number;
}

type WorkerPhases = PushPhases["workers"][number];

/**
 * Streams a weight version to every registered rollout worker in parallel (UpdateWeights, the
 * bytes on a tcp-v1 data connection or as chunks). A worker that is down or rejects is skipped and
 * reported; it catches up by calling GetWeights when it is back.
 */
export class WeightPusher {
  private readonly clients = new ClientPool<RolloutServiceClient>((address) => createClient(sharedEncodingRolloutClient(), address));
  readonly transport: PushTransport;
  private readonly dataServer: WeightDataServer | undefined;
  /** Pushes to one worker that went as chunks because it did not take the data connection. */
  chunkFallbacks = 0;
  /** Pushes sent as chunks directly to a worker that recently did not take the data connection. */
  chunkOnlyPushes = 0;
  /** Pushes to one worker that went on its kept connection without a call, and those of them that got no answer there (pushed again with a call). */
  directPushes = 0;
  directFallbacks = 0;
  /** Workers (by address) already warned about taking chunks instead of the data connection. */
  private readonly warnedChunks = new Set<string>();
  /** Workers (by address) pushed chunks directly until this time (CHUNKS_ONLY_MS after a fallback). */
  private readonly chunksOnlyUntil = new Map<string, number>();
  /** The last push's phases (undefined before the first push). */
  lastPhases: PushPhases | undefined;
  /** The workers of the last Redis lookup and when it was made (cacheWorkers). */
  private knownWorkers: { workers: WorkerEntry[]; at: number } | undefined;
  /** The subscription to the registry's change channel (cacheWorkers). */
  private registryWatch: Redis | undefined;
  private watching = false;
  /** Change notices received so far. */
  private registryChanges = 0;
  /** Redis lookups of the worker list so far. */
  workerLookups = 0;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly metrics?: LearnerMetrics,
    private readonly opts: WeightPusherOptions = {},
  ) {
    this.transport = opts.transport ?? "tcp";
    if (!PUSH_TRANSPORTS.includes(this.transport))
      throw new Error(`push transport: must be one of ${PUSH_TRANSPORTS.join(", ")}, got ${JSON.stringify(this.transport)}`);
    if (this.transport === "tcp")
      this.dataServer = new WeightDataServer(opts.dataHost ?? "127.0.0.1", opts.dataPort ?? 0, opts.keepConnections ?? true, opts.directPushes ?? true);
  }

  /** What every registered worker that answers serves (a worker that is down is left out). */
  async servedModels(): Promise<{ workerId: string; info: ModelInfo }[]> {
    const workers = await listWorkers(this.redis, ROLLOUT_WORKER_KIND);
    const infos = await Promise.all(
      workers.map(
        (w) =>
          new Promise<{ workerId: string; info: ModelInfo } | null>((resolve) => {
            this.clients.get(w.address).getModelInfo({}, { deadline: new Date(Date.now() + MODEL_INFO_TIMEOUT_MS) }, (err, info) => {
              if (err) this.logger.warn("rollout worker did not answer GetModelInfo; its model is not checked", { worker: w.id, err: err.message });
              resolve(err ? null : { workerId: w.id, info: info! });
            });
          }),
      ),
    );
    return infos.filter((x) => x !== null);
  }

  /** Subscribes (once) to the registry's change channel; the cache is used only while subscribed. */
  private watchRegistry(): void {
    if (this.registryWatch || this.opts.cacheWorkers === false) return;
    const sub = this.redis.duplicate();
    this.registryWatch = sub;
    const channel = workersChangedChannel(ROLLOUT_WORKER_KIND);
    const subscribe = () =>
      sub.subscribe(channel).then(
        () => {
          // A list looked up before the subscription was active may have missed a notice.
          this.registryChanges++;
          this.knownWorkers = undefined;
          this.watching = true;
        },
        (err: Error) => this.logger.warn("cannot watch the worker registry; looking the workers up before every push", { err: err.message }),
      );
    sub.on("message", () => {
      this.registryChanges++;
      this.knownWorkers = undefined;
    });
    sub.on("error", () => undefined);
    // Notices sent while disconnected are lost: after a reconnect, subscribe again and start from a new lookup.
    let lost = false;
    sub.on("close", () => {
      lost = true;
      this.watching = false;
      this.knownWorkers = undefined;
    });
    sub.on("ready", () => {
      if (lost && this.registryWatch === sub) {
        lost = false;
        void subscribe();
      }
    });
    void subscribe();
  }

  /** The worker list: the cached one while it is valid, else a Redis lookup (null if that fails). */
  private async workers(policy: PolicyRef): Promise<WorkerEntry[] | null> {
    this.watchRegistry();
    if (this.workersCached()) return this.knownWorkers!.workers;
    this.knownWorkers = undefined;
    this.workerLookups++;
    const at = Date.now();
    const changes = this.registryChanges;
    try {
      const workers = await listWorkers(this.redis, ROLLOUT_WORKER_KIND);
      // Not kept if a change notice came during the lookup (it may predate the change).
      if (this.opts.cacheWorkers !== false && this.registryChanges === changes) this.knownWorkers = { workers, at };
      return workers;
    } catch (err) {
      // The step is applied and checkpointed already; workers catch up through GetWeights.
      this.logger.error("cannot list rollout workers; version not pushed", { policy: formatPolicy(policy), err: (err as Error).message });
      return null;
    }
  }

  /** Whether the subscription to the registry's change channel is up (the cache is used only then). */
  watchingRegistry(): boolean {
    return this.watching;
  }

  /** Whether the next push would use the cached worker list (no Redis lookup). */
  workersCached(): boolean {
    const k = this.knownWorkers;
    return k !== undefined && this.watching && Date.now() - k.at < WORKER_CACHE_MS;
  }

  async push(policy: PolicyRef, tensors: HostTensor[]): Promise<PushResult> {
    const { version } = policy;
    const t0 = performance.now();
    const phases: PushPhases = { listedMs: 0, workers: [], totalMs: 0 };
    const lookups = this.workerLookups;
    const workers = await this.workers(policy);
    phases.listedMs = performance.now() - t0;
    if (!workers) return { pushedTo: [], pushFailed: [], seconds: (performance.now() - t0) / 1000, bytes: 0 };
    const cached = this.workerLookups === lookups;
    let chunks: WeightChunkIn[] | undefined;
    let payload: WeightDataPayload | undefined;
    const bytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const ctx: PushContext = {
      policy,
      bytes,
      chunks: () => {
        if (!chunks) {
          chunks = [...chunkWeights(policy, tensors)];
          // Every worker's stream sends the same chunk objects: each is encoded once, for all of them.
          const encoding = new SharedEncoding(workers.length);
          for (const c of chunks) encodingOf.set(c, encoding);
        }
        return chunks;
      },
      payload: () => (payload ??= new WeightDataPayload(policy, tensors, { digest: this.opts.digest })),
      t0,
    };
    let outcomes = await Promise.all(
      workers.map((w) => {
        const phase: WorkerPhases = { worker: w.id, callMs: 0, replyMs: 0 };
        phases.workers.push(phase);
        return this.pushTo(w, ctx, phase).then(
          // Not accepted but already serving this job at this version or newer (a worker that would
          // not take it by the shared rule) is fine too.
          (res) => ({
            w,
            phase,
            ok: res.accepted || !acceptsPolicy(policy, { jobId: res.jobId, version: Number(res.version) }),
            res,
            err: undefined as string | undefined,
          }),
          (err: Error) => ({ w, phase, ok: false, res: undefined, err: err.message }),
        );
      }),
    );
    if (outcomes.some((o) => !o.ok)) {
      this.knownWorkers = undefined;
      // A worker of the cached list failed: look again; one that is no longer registered
      // (deregistered, or its registration expired) is not this push's failure.
      const listed = cached ? await this.workers(policy) : null;
      if (listed)
        outcomes = outcomes.flatMap((o) => {
          // Registration meta (the served version) as of this lookup.
          const now = listed.find((w) => w.id === o.w.id && w.address === o.w.address);
          return o.ok || now ? [{ ...o, w: now ?? o.w }] : [];
        });
    }
    const pushedTo: string[] = [];
    const pushFailed: string[] = [];
    for (const o of outcomes) {
      this.metrics?.pushPaths.inc({ path: o.ok && o.phase.path ? o.phase.path : "failed" });
      if (o.ok) pushedTo.push(o.w.id);
      else {
        pushFailed.push(o.w.id);
        this.logger.warn("weight push failed; the worker will catch up", { worker: o.w.id, policy: formatPolicy(policy), err: o.err ?? o.res?.message });
      }
      // A worker on another job's policy is behind by the whole of this job's versions.
      const sameJob = String(o.w.meta?.policy_job_id ?? "") === policy.jobId;
      const served = o.ok ? version : sameJob ? Number(o.w.meta?.policy_version ?? 0) : -1;
      this.metrics?.versionsBehind.set({ worker: o.w.id }, Math.max(0, version - served));
    }
    const seconds = (performance.now() - t0) / 1000;
    phases.totalMs = seconds * 1000;
    this.lastPhases = phases;
    this.metrics?.pushSeconds.observe(seconds);
    this.metrics?.pushBytes.inc(bytes * pushedTo.length);
    return { pushedTo, pushFailed, seconds, bytes: bytes * pushedTo.length };
  }

  private async pushTo(w: WorkerEntry, ctx: PushContext, phase: WorkerPhases): Promise<UpdateWeightsResponse> {
    try {
      if (!this.dataServer) return await this.pushOne(w, ctx, phase);
      if ((this.chunksOnlyUntil.get(w.address) ?? 0) > Date.now()) {
        this.chunkOnlyPushes++;
        return await this.pushOne(w, ctx, phase);
      }
      return (await this.pushDirect(w, ctx, phase)) ?? (await this.pushOneTcp(w, ctx, phase));
    } finally {
      phase.replyMs = performance.now() - ctx.t0;
    }
  }

  /**
   * One worker on its kept connection without a call, when it takes direct pushes there and the
   * connection is idle; undefined when it cannot go so, or got no answer (the caller pushes with a
   * call: a worker that installed the version already answers that it serves it).
   */
  private async pushDirect(w: WorkerEntry, ctx: PushContext, phase: WorkerPhases): Promise<UpdateWeightsResponse | undefined> {
    const d = this.dataServer!.pushDirect(ctx.payload(), w.address, pushTimeoutMs(ctx.bytes));
    if (!d) return undefined;
    this.directPushes++;
    phase.callMs = performance.now() - ctx.t0;
    phase.path = "direct";
    try {
      return await d.reply;
    } catch (err) {
      if (!(err instanceof DirectPushLost)) throw err;
      this.directFallbacks++;
      this.metrics?.pushPaths.inc({ path: "direct_lost" });
      this.logger.warn("direct weight push got no answer; pushing that version with a call", { worker: w.id, err: err.message });
      return undefined;
    } finally {
      const written = d.written();
      if (written !== undefined) phase.writtenMs = written - ctx.t0;
    }
  }

  /**
   * One worker over a tcp-v1 data connection. A worker that did not get the payload because it
   * cannot reach the data server (FAILED_PRECONDITION: it answers so only when it could not open a
   * data connection, also when the payload went on a kept connection that it no longer has), or
   * that does not know the transport (INVALID_ARGUMENT without having connected or been sent the
   * payload on a kept connection: an empty stream), gets the chunks of this push instead (warned
   * once per worker), and chunks directly for the next CHUNKS_ONLY_MS. A failed call whose payload
   * went on the kept connection drops that connection (its state is unknown).
   */
  private async pushOneTcp(w: WorkerEntry, ctx: PushContext, phase: WorkerPhases): Promise<UpdateWeightsResponse> {
    const { policy, t0 } = ctx;
    let offer;
    try {
      offer = await this.dataServer!.offer(ctx.payload(), { key: w.address });
    } catch (err) {
      this.logger.warn("weight data server unavailable; pushing chunks on the stream", { err: (err as Error).message });
      return this.pushOne(w, ctx, phase);
    }
    let failed = false;
    try {
      phase.callMs = performance.now() - t0;
      phase.path = "tcp_call";
      return await new Promise<UpdateWeightsResponse>((resolve, reject) => {
        const stream = this.clients
          .get(w.address)
          .updateWeights(weightDataMetadata(offer, policy), { deadline: pushDeadline(ctx.bytes) }, (err, res) => {
            if (err) reject(err);
            else resolve(res!);
          });
        stream.end();
      });
    } catch (err) {
      failed = true;
      const code = (err as grpc.ServiceError).code;
      // Whether this push's payload was taken over a connection (a new one, or the kept one it was sent on).
      const noConnection =
        code === grpc.status.FAILED_PRECONDITION ? !offer.connectedAnew() : code === grpc.status.INVALID_ARGUMENT && offer.conn !== "kept" && !offer.connectedAnew();
      if (noConnection) {
        this.chunkFallbacks++;
        this.chunksOnlyUntil.set(w.address, Date.now() + CHUNKS_ONLY_MS);
        const first = !this.warnedChunks.has(w.address);
        this.warnedChunks.add(w.address);
        this.logger[first ? "warn" : "debug"]("rollout worker did not take the weight data connection; pushing it chunks on the stream", {
          worker: w.id,
          err: (err as Error).message,
        });
        return this.pushOne(w, ctx, phase);
      }
      this.clients.evict(w.address);
      throw err;
    } finally {
      const { greeted, written } = offer.times();
      if (greeted !== undefined) phase.greetedMs = greeted - t0;
      if (written !== undefined) phase.writtenMs = written - t0;
      offer.cancel({ dropKept: failed });
    }
  }

  private pushOne(w: WorkerEntry, ctx: PushContext, phase: WorkerPhases): Promise<UpdateWeightsResponse> {
    const chunks = ctx.chunks();
    phase.callMs = performance.now() - ctx.t0;
    phase.path = "chunks";
    return new Promise((resolve, reject) => {
      const stream = this.clients.get(w.address).updateWeights({ deadline: pushDeadline(ctx.bytes) }, (err, res) => {
        if (err) {
          this.clients.evict(w.address);
          reject(err);
        } else resolve(res!);
      });
      void (async () => {
        for (const c of chunks) {
          if (!stream.write(c)) await new Promise((r) => stream.once("drain", r));
        }
        stream.end();
      })().catch(reject);
    });
  }

  close(): void {
    this.registryWatch?.disconnect();
    this.registryWatch = undefined;
    this.watching = false;
    this.clients.close();
    this.dataServer?.close();
  }
}
