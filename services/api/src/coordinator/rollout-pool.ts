import type { Redis } from "ioredis";
import {
  ClientPool,
  createClient,
  isRetryable,
  listWorkers,
  ROLLOUT_WORKER_KIND,
  loadProto,
  type DecodingParams,
  type GenerateResponse,
  type Logger,
  type RolloutServiceClient,
  type Sample,
  type WorkerEntry,
} from "@rlmesh/shared";
import type { InfillItem } from "@rlmesh/shared/gen/rlmesh/v1/InfillItem";
import type { InfillResponse__Output as InfillResponse } from "@rlmesh/shared/gen/rlmesh/v1/InfillResponse";
import type { InfillSample__Output as InfillSample } from "@rlmesh/shared/gen/rlmesh/v1/InfillSample";

/** Per-call deadline for Generate when the caller gives none. */
export const DEFAULT_GENERATE_TIMEOUT_MS = 300_000;
/** Attempts per shard before the step fails (UNAVAILABLE moves the shard to another worker). */
export const GENERATE_ATTEMPTS = 4;
/**
 * How long a Generate waits for a first rollout worker to register before its step fails (and is
 * retried): long enough for a supervised worker to restart and load its model; the step tells
 * the job it is waiting every 10 s meanwhile (waiting-notice.ts).
 */
export const WORKER_WAIT_MS = 120_000;
/** Poll interval of the registry while waiting for workers. */
const WORKER_POLL_MS = 200;
/** Pause before a shard's next attempt when no worker is registered at all. */
const NO_WORKER_RETRY_MS = 500;
/** Back-off after a retryable failure: attempt k (0-based) waits (k + 1) × this. */
const RETRY_BACKOFF_MS = 200;

export interface PromptInput {
  id: string;
  text: string;
}

export interface GenerateResult {
  samples: Sample[];
  /** worker id → prompts it served. */
  byWorker: Record<string, number>;
  seconds: number;
}

export interface InfillResult {
  samples: InfillSample[];
  /** worker id → items it served. */
  byWorker: Record<string, number>;
  seconds: number;
}

export interface RolloutCallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  minPolicyVersion?: number;
  requestId?: string;
  policyJobId?: string;
}

/** Thrown when no live rollout worker is registered. */
export class NoWorkersError extends Error {
  override name = "NoWorkersError";
}

/**
 * Spreads Generate calls over every live rollout worker (found in the Redis registry), one
 * shard of prompts per worker, retrying a shard on another worker when one is UNAVAILABLE.
 */
export class RolloutPool {
  private readonly clients = new ClientPool<RolloutServiceClient>((address) =>
    createClient(loadProto().proto.rlmesh.v1.RolloutService, address),
  );

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
  ) {}

  async workers(): Promise<WorkerEntry[]> {
    return listWorkers(this.redis, ROLLOUT_WORKER_KIND);
  }

  /** Waits until at least `n` workers are registered. */
  async waitForWorkers(n: number, timeoutMs: number, signal?: AbortSignal): Promise<WorkerEntry[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ws = await this.workers();
      if (ws.length >= n) return ws;
      if (Date.now() > deadline || signal?.aborted) throw new NoWorkersError(`${ws.length} rollout worker(s) registered, need ${n}`);
      await new Promise((r) => setTimeout(r, WORKER_POLL_MS));
    }
  }

  async generate(
    prompts: PromptInput[],
    samplesPerPrompt: number,
    params: DecodingParams,
    opts: RolloutCallOptions = {},
  ): Promise<GenerateResult> {
    const { results, byWorker, seconds } = await this.onShards<PromptInput, Sample>(prompts, opts, (c, shard, deadline, done) =>
      c.generate(
        {
          prompts: shard,
          samplesPerPrompt,
          params,
          minPolicyVersion: opts.minPolicyVersion ?? 0,
          requestId: opts.requestId ?? "",
          policyJobId: opts.policyJobId ?? "",
        },
        { deadline },
        (err, r: GenerateResponse | undefined) => done(err, r?.samples),
      ),
    );
    return { samples: results, byWorker, seconds };
  }

  /**
   * RolloutService.Infill over every live worker (one shard of items per worker, retried like
   * Generate): `variableLength` unset lets each worker choose (variable when its model supports it).
   */
  async infill(
    items: InfillItem[],
    samplesPerItem: number,
    params: DecodingParams,
    opts: RolloutCallOptions & { variableLength?: boolean; eosCut?: number; expandCut?: number; lengthSearch?: number } = {},
  ): Promise<InfillResult> {
    const { results, byWorker, seconds } = await this.onShards<InfillItem, InfillSample>(items, opts, (c, shard, deadline, done) =>
      c.infill(
        {
          items: shard,
          samplesPerItem,
          params,
          requestId: opts.requestId ?? "",
          policyJobId: opts.policyJobId ?? "",
          ...(opts.variableLength !== undefined ? { variableLength: opts.variableLength } : {}),
          ...(opts.eosCut !== undefined ? { eosCut: opts.eosCut } : {}),
          ...(opts.expandCut !== undefined ? { expandCut: opts.expandCut } : {}),
          ...(opts.lengthSearch !== undefined ? { lengthSearch: opts.lengthSearch } : {}),
        },
        { deadline },
        (err, r: InfillResponse | undefined) => done(err, r?.samples),
      ),
    );
    return { samples: results, byWorker, seconds };
  }

  /**
   * Spreads `items` over the live workers, one shard each, and calls `call` per shard; a shard
   * whose worker is UNAVAILABLE is retried on another one (GENERATE_ATTEMPTS in all).
   */
  private async onShards<I, R>(
    items: I[],
    opts: RolloutCallOptions,
    call: (
      client: RolloutServiceClient,
      shard: I[],
      deadline: Date,
      done: (err: Error | null, results: R[] | undefined) => void,
    ) => { cancel(): void },
  ): Promise<{ results: R[]; byWorker: Record<string, number>; seconds: number }> {
    const t0 = performance.now();
    let workers = await this.workers();
    if (workers.length === 0) workers = await this.waitForWorkers(1, WORKER_WAIT_MS, opts.signal);
    const shards: I[][] = workers.map(() => []);
    items.forEach((p, i) => shards[i % workers.length]!.push(p));
    const byWorker: Record<string, number> = {};
    const results = await Promise.all(
      shards.map(async (shard, i) => {
        if (shard.length === 0) return [] as R[];
        let lastErr: unknown;
        for (let attempt = 0; attempt < GENERATE_ATTEMPTS; attempt++) {
          if (opts.signal?.aborted) throw opts.signal.reason;
          const live = attempt === 0 ? workers : await this.workers();
          const w = live[(i + attempt) % Math.max(1, live.length)];
          if (!w) {
            await new Promise((r) => setTimeout(r, NO_WORKER_RETRY_MS));
            continue;
          }
          try {
            const c = this.clients.get(w.address);
            const deadline = new Date(Date.now() + (opts.timeoutMs ?? DEFAULT_GENERATE_TIMEOUT_MS));
            const res = await new Promise<R[]>((resolve, reject) => {
              const callObj = call(c, shard, deadline, (err, r) => (err ? reject(err) : resolve(r ?? [])));
              opts.signal?.addEventListener("abort", () => callObj.cancel(), { once: true });
            });
            byWorker[w.id] = (byWorker[w.id] ?? 0) + shard.length;
            return res;
          } catch (err) {
            lastErr = err;
            if (!isRetryable(err)) throw err;
            this.logger.warn("rollout worker unavailable, retrying shard elsewhere", {
              worker: w.id,
              attempt,
              err: (err as Error).message,
            });
            this.clients.evict(w.address);
            await new Promise((r) => setTimeout(r, RETRY_BACKOFF_MS * (attempt + 1)));
          }
        }
        throw lastErr;
      }),
    );
    return { results: results.flat(), byWorker, seconds: (performance.now() - t0) / 1000 };
  }

  close(): void {
    this.clients.close();
  }
}
