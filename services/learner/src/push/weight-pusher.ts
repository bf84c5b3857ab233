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

/**
 * Streams a weight version to every registered rollout worker in parallel (chunked
 * UpdateWeights). A worker that is down or rejects is skipped and reported; it catches up by
 * calling GetWeights when it is back.
 */
export class WeightPusher {
  private readonly clients = new ClientPool<RolloutServiceClient>((address) =>
    createClient(loadProto().proto.rlmesh.v1.RolloutService, address),
  );

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
