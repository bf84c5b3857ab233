import * as grpc from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import {
  ClientPool,
  chunkWeights,
  createClient,
  listWorkers,
  ROLLOUT_WORKER_KIND,
  loadProto,
  type HostTensor,
  type Logger,
  type ModelInfo,
  type RolloutServiceClient,
  type UpdateWeightsResponse,
  type WeightChunkIn,
  type WorkerEntry,
} from "@rlmesh/shared";
import type { PushResult } from "../learner-service.js";
import type { LearnerMetrics } from "../learner-metrics.js";
import { formatPolicy, type PolicyRef } from "@rlmesh/shared/weights";

/** Deadline for pushing one version to one worker. */
export const PUSH_TIMEOUT_MS = 60_000;
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

/**
 * Streams a weight version to every registered rollout worker in parallel (chunked
 * UpdateWeights). A worker that is down or rejects is skipped and reported; it catches up by
 * calling GetWeights when it is back.
 */
export class WeightPusher {
  private readonly clients = new ClientPool<RolloutServiceClient>((address) => createClient(sharedEncodingRolloutClient(), address));

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly metrics?: LearnerMetrics,
  ) {}

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

  async push(policy: PolicyRef, tensors: HostTensor[]): Promise<PushResult> {
    const { version } = policy;
    const t0 = performance.now();
    let workers: WorkerEntry[];
    try {
      workers = await listWorkers(this.redis, ROLLOUT_WORKER_KIND);
    } catch (err) {
      // The step is applied and checkpointed already; workers catch up through GetWeights.
      this.logger.error("cannot list rollout workers; version not pushed", { policy: formatPolicy(policy), err: (err as Error).message });
      return { pushedTo: [], pushFailed: [], seconds: (performance.now() - t0) / 1000, bytes: 0 };
    }
    const chunks = [...chunkWeights(policy, tensors)];
    // Every worker's stream sends the same chunk objects: each is encoded once, for all of them.
    const encoding = new SharedEncoding(workers.length);
    for (const c of chunks) encodingOf.set(c, encoding);
    const bytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const outcomes = await Promise.all(
      workers.map((w) =>
        this.pushOne(w, chunks).then(
          // Not accepted but already serving this job at this version or newer is fine too.
          (res) => ({ w, ok: res.accepted || (res.jobId === policy.jobId && res.version >= version), res, err: undefined as string | undefined }),
          (err: Error) => ({ w, ok: false, res: undefined, err: err.message }),
        ),
      ),
    );
    const pushedTo: string[] = [];
    const pushFailed: string[] = [];
    for (const o of outcomes) {
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
    this.metrics?.pushSeconds.observe(seconds);
    this.metrics?.pushBytes.inc(bytes * pushedTo.length);
    return { pushedTo, pushFailed, seconds, bytes: bytes * pushedTo.length };
  }

  private pushOne(w: WorkerEntry, chunks: WeightChunkIn[]): Promise<UpdateWeightsResponse> {
    return new Promise((resolve, reject) => {
      const stream = this.clients.get(w.address).updateWeights({ deadline: new Date(Date.now() + PUSH_TIMEOUT_MS) }, (err, res) => {
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
    this.clients.close();
  }
}
