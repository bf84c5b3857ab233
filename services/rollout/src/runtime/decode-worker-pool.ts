/**
 * The decode worker threads of one model: start-up (one ORT session each), request/reply matching
 * by key, chunked dispatch of a batch to the least busy worker with cancellation, errors revived
 * with their domain class, and shutdown. Knows nothing of weight versions or of requests' meaning.
 */
import { Worker } from "node:worker_threads";
import type { Logger } from "@rlmesh/shared";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { DecodeAbortedError } from "../decoding/diffusion-decoder.js";
import type { ExecutionProvider } from "./execution-provider.js";
import type { RolloutModel } from "./rollout-model.js";
import type { FromWorker, SerializedError, ToWorker, WorkerInit } from "./worker-protocol.js";

export interface WorkerSlot {
  index: number;
  worker: Worker;
  queued: number;
  provider: ExecutionProvider;
}

export interface DecodeWorkerPoolOptions {
  model: RolloutModel;
  replicas: number;
  intraOpNumThreads: number;
  executionProvider: ExecutionProvider;
  logger?: Logger;
}

type Waiter = { resolve: (m: FromWorker) => void; reject: (e: Error) => void };

/** Rebuilds a worker error on this side with the same class where callers match on it. */
function reviveError(e: SerializedError): Error {
  if (e.name === "InvalidDecodeParamsError") return new InvalidDecodeParamsError(e.field ?? "params", e.message);
  if (e.name === "AbortError") return new DecodeAbortedError(e.message.replace(/^decode aborted: /, ""));
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** Starts one decode worker and waits for its "ready" (throws its init error). */
async function startWorker(index: number, opts: DecodeWorkerPoolOptions): Promise<WorkerSlot> {
  const init: WorkerInit = {
    index,
    modelBytes: opts.model.modelBytes,
    ...(opts.model.externalModelPath ? { externalModelPath: opts.model.externalModelPath } : {}),
    ...(opts.model.tokenizerVocabSize !== undefined ? { tokenizerVocabSize: opts.model.tokenizerVocabSize } : {}),
    manifest: opts.model.manifest,
    settings: { executionProvider: opts.executionProvider, intraOpNumThreads: opts.intraOpNumThreads },
    version: 0,
  };
  const worker = new Worker(new URL("./decode-worker.js", import.meta.url), { workerData: init });
  const ready = await new Promise<FromWorker>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`decode worker ${index} exited with code ${code} during start-up`)));
  });
  if (ready.type !== "ready") {
    await worker.terminate();
    throw reviveError(ready.type === "init-failed" ? ready.error : { name: "Error", message: `unexpected ${ready.type}` });
  }
  opts.logger?.info("decode worker ready", {
    worker: index,
    execution_provider: ready.provider,
    intra_op_threads: opts.intraOpNumThreads,
    ...(ready.fallbackReason ? { fallback_reason: ready.fallbackReason } : {}),
  });
  return { index, worker, queued: 0, provider: ready.provider };
}

export class DecodeWorkerPool {
  private nextId = 1;
  private readonly waiters = new Map<string, Waiter>();
  private closed = false;

  private constructor(
    private readonly slots: WorkerSlot[],
    private readonly logger: Logger | undefined,
  ) {
    for (const s of slots) {
      s.worker.on("message", (m: FromWorker) => this.onMessage(s, m));
      // A crashed worker must not leave callers waiting forever.
      s.worker.on("error", (err) => this.failSlot(s, err));
      s.worker.on("exit", (code) => this.failSlot(s, new Error(`decode worker ${s.index} exited with code ${code}`)));
    }
  }

  static async start(opts: DecodeWorkerPoolOptions): Promise<DecodeWorkerPool> {
    const slots = await Promise.all(Array.from({ length: opts.replicas }, (_, index) => startWorker(index, opts)));
    return new DecodeWorkerPool(slots, opts.logger);
  }

  get size(): number {
    return this.slots.length;
  }

  /** The execution provider the first worker's session runs on. */
  get provider(): ExecutionProvider {
    return this.slots[0]!.provider;
  }

  /**
   * Sends `items` to the decode workers in chunks of at most maxBatch (each chunk to the least
   * busy worker), cancels them all when `signal` fires, and returns what `collect` makes of each
   * chunk's answer, in item order.
   */
  async dispatch<I, S>(
    items: readonly I[],
    opts: { signal?: AbortSignal; maxBatch: number },
    post: (chunk: I[], id: number) => ToWorker,
    collect: (chunk: I[], msg: FromWorker, slot: WorkerSlot) => S[],
  ): Promise<S[]> {
    const { maxBatch } = opts;
    const chunks: I[][] = [];
    for (let i = 0; i < items.length; i += maxBatch) chunks.push(items.slice(i, i + maxBatch));
    const ids: Array<{ slot: WorkerSlot; id: number }> = [];
    const onAbort = () => {
      for (const { slot, id } of ids)
        slot.worker.postMessage({ type: "cancel", id, reason: String(opts.signal?.reason ?? "cancelled") } satisfies ToWorker);
    };
    if (opts.signal?.aborted) throw new DecodeAbortedError(opts.signal.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const outputs = await Promise.all(
        chunks.map(async (chunk) => {
          const slot = this.slots.reduce((a, b) => (b.queued < a.queued ? b : a));
          const id = this.nextId++;
          ids.push({ slot, id });
          slot.queued += chunk.length;
          try {
            return collect(chunk, await this.request(slot, `job:${id}`, post(chunk, id)), slot);
          } finally {
            slot.queued -= chunk.length;
          }
        }),
      );
      return outputs.flat();
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Sends `msg` to every worker; one promise per worker for its reply under `key` (e.g. `prepare:3`). */
  requestEach(key: string, msg: ToWorker): Array<Promise<FromWorker>> {
    return this.slots.map((s) => this.request(s, key, msg));
  }

  /** Sends `msg` to every worker without waiting for a reply. */
  postEach(msg: ToWorker): void {
    for (const s of this.slots) s.worker.postMessage(msg);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const w of this.waiters.values()) w.reject(new Error("rollout engine closed"));
    this.waiters.clear();
  }

  private request(slot: WorkerSlot, key: string, msg: ToWorker): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      this.waiters.set(`${slot.index}/${key}`, { resolve, reject });
      slot.worker.postMessage(msg);
    });
  }

  private failSlot(slot: WorkerSlot, err: Error): void {
    for (const [key, w] of this.waiters) {
      if (!key.startsWith(`${slot.index}/`)) continue;
      this.waiters.delete(key);
      w.reject(this.closed ? new Error("rollout engine closed") : err);
    }
    if (!this.closed) this.logger?.error("decode worker failed", { worker: slot.index, err });
  }

  private onMessage(slot: WorkerSlot, m: FromWorker): void {
    let key: string;
    switch (m.type) {
      case "result":
      case "infill-result":
      case "error":
        key = `job:${m.id}`;
        break;
      case "prepared":
      case "prepare-failed":
        key = `prepare:${m.version}`;
        break;
      case "committed":
        key = `commit:${m.version}`;
        break;
      default:
        return;
    }
    const w = this.waiters.get(`${slot.index}/${key}`);
    if (!w) return;
    this.waiters.delete(`${slot.index}/${key}`);
    if (m.type === "error") w.reject(reviveError(m.error));
    else if (m.type === "prepare-failed") w.reject(reviveError(m.error));
    else w.resolve(m);
  }
}
