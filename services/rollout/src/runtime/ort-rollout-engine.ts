/**
 * The rollout runtime: a pool of decode worker threads over one model,
 * `generate` (prompts × samples → tokens, text, policy version, NFE, timings), validated
 * hot weight swaps that switch every worker between batches, and cancellation. In domain terms (requests, resolved
 * parameters, domain errors); service/proto-rollout-engine.ts adapts it to rollout.proto.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { resolve } from "node:path";
import { hostname } from "node:os";
import type { HostTensor, Logger } from "@rlmesh/shared";
import { loadModel, type ModelManifest } from "@rlmesh/shared/model/index";
import { modelFingerprint } from "@rlmesh/shared/model/model-fingerprint";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { deriveSeed } from "../decoding/counter-rng.js";
import { InvalidDecodeParamsError, resolveDecodeParams, type DecodeParams, type DecodeParamsInput } from "../decoding/decode-params.js";
import { withModelLookahead } from "../decoding/model-lookahead.js";
import { DecodeAbortedError, type DecodeInput } from "../decoding/diffusion-decoder.js";
import type { ExecutionProvider } from "./execution-provider.js";
import { validateWeights, weightSpecsOf, WeightValidationError, type WeightSpec } from "./weight-validation.js";
import type { ForwardCounts, FromWorker, SerializedError, ToWorker, WorkerInit } from "./worker-protocol.js";
import { prepareInfill, type InfilledSample, type InfillRequestItem, type InfillRequestOptions, type InfillResult, type PreparedInfill } from "./infill-requests.js";
import { acceptsPolicy, formatPolicy, samePolicy, type PolicyRef } from "@rlmesh/shared/weights";

/** Samples decoded together by one worker. */
export const DEFAULT_MAX_BATCH = 16;
/** Weight serials remembered besides the served one (batches in flight across swaps report theirs). */
const KEPT_POLICY_SERIALS = 16;

/** Text side of the model: prompt encoding (must match training) and response decoding. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export interface RolloutModel {
  modelBytes: Uint8Array;
  manifest: ModelManifest;
  /** Without it, prompts must be token ids and `text` is empty. */
  codec?: TextCodec;
  /** sha256 of the directory's own weights (shared model-fingerprint.ts); "" when not loaded from a directory. */
  fingerprint?: string;
  /** model.onnx's path when its weights are in ONNX external data (sessions are then created from the path). */
  externalModelPath?: string;
  /** Ids the tokenizer can produce (< vocab_size when the checkpoint pads its vocabulary); none above is sampled. */
  tokenizerVocabSize?: number;
}

export interface RolloutEngineOptions {
  model: RolloutModel;
  /** Worker threads, each with its own ORT session. @defaultValue 1 */
  replicas?: number;
  /** ORT intra-op threads per worker. @defaultValue max(1, floor(cores / replicas)) */
  intraOpNumThreads?: number;
  /** @defaultValue "cpu" */
  executionProvider?: ExecutionProvider;
  /** @defaultValue DEFAULT_MAX_BATCH */
  maxBatch?: number;
  /** Version of the weights inside model.onnx. @defaultValue 0 */
  initialVersion?: number;
  /** Reported in responses. @defaultValue hostname:pid */
  workerId?: string;
  /** Called after each worker batch (metrics). */
  onBatch?: (stats: BatchStats) => void;
  logger?: Logger;
}

export interface BatchStats {
  worker: number;
  batchSize: number;
  policyVersion: number;
  responseTokens: number;
  nfe: number;
  forwards: ForwardCounts;
  queueSeconds: number;
  decodeSeconds: number;
}

export interface GenerateRequestItem {
  promptId: string;
  /** Text (encoded with the model's tokenizer) or token ids. */
  prompt: string | readonly number[];
  /** @defaultValue 1 */
  samples?: number;
  /** Seed of this prompt's samples. @defaultValue derived from params.seed and the request's index */
  seed?: number;
}

export interface GeneratedSample {
  promptId: string;
  sampleIndex: number;
  promptTokenIds: number[];
  /** Response ids up to and including the first EOS. */
  tokenIds: number[];
  /** Response text without the EOS. */
  text: string;
  finished: boolean;
  policyVersion: number;
  /** The job whose policy generated the sample ("" = the model directory's own weights). */
  policyJobId: string;
  nfe: number;
  timings: { queueSeconds: number; decodeSeconds: number };
  /** Only with params.trace: per token of tokenIds, the 1-based step that committed it. */
  commitSteps?: number[];
}

export interface GenerateResult {
  samples: GeneratedSample[];
  /** The oldest policy any sample used (they differ only across a concurrent swap). */
  policyVersion: number;
  policyJobId: string;
  seconds: number;
}

export interface SwapResult {
  version: number;
  jobId: string;
  swapSeconds: number;
}

export interface SwapOptions {
  /** The job whose policy `version` is. @defaultValue the job served now */
  jobId?: string;
  /** Swap only if this policy is still the one served (a catch-up that a push overtook). */
  ifServing?: PolicyRef;
}

/** Thrown when a swap's `ifServing` no longer holds: another version was swapped in meanwhile. */
export class SupersededSwapError extends WeightValidationError {
  override name = "SupersededSwapError";
}

export interface EngineInfo {
  name: string;
  manifest: ModelManifest;
  /** The model directory's weights fingerprint, computed once at load ("" for a model given as bytes). */
  modelFingerprint: string;
  policyVersion: number;
  policyJobId: string;
  executionProvider: ExecutionProvider;
  weights: WeightSpec[];
  replicas: number;
  intraOpNumThreads: number;
}

/** Rebuilds a worker error on this side with the same class where callers match on it. */
function reviveError(e: SerializedError): Error {
  if (e.name === "InvalidDecodeParamsError") return new InvalidDecodeParamsError(e.field ?? "params", e.message);
  if (e.name === "AbortError") return new DecodeAbortedError(e.message.replace(/^decode aborted: /, ""));
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  queued: number;
  provider: ExecutionProvider;
}

interface PreparedSample {
  req: GenerateRequestItem;
  promptIds: number[];
  sampleIndex: number;
  input: DecodeInput;
}

type Waiter = { resolve: (m: FromWorker) => void; reject: (e: Error) => void };

/** Loads a model directory (manifest.json, model.onnx, tokenizer.json) with its text codec. */
export async function loadRolloutModel(dir: string): Promise<RolloutModel> {
  const loaded = await loadModel(dir);
  const tok = await loadTokenizer(loaded.tokenizerPath);
  return {
    modelBytes: loaded.modelBytes,
    manifest: loaded.manifest,
    fingerprint: await modelFingerprint(loaded),
    tokenizerVocabSize: loaded.tokenizerVocabSize,
    ...(loaded.externalDataFiles.length > 0 ? { externalModelPath: resolve(loaded.modelPath) } : {}),
    codec: { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids, { skipSpecial: true }) },
  };
}

export class OrtRolloutEngine {
  private nextId = 1;
  private readonly waiters = new Map<string, Waiter>();
  /** The policy served now (job and its version). */
  private policy: PolicyRef;
  /**
   * Decode workers know a weight set by a serial number that only grows within this process
   * (versions repeat across jobs); this maps each live serial to its job and version.
   */
  private serial = 0;
  private readonly policies = new Map<number, PolicyRef>();
  private swapChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly opts: RolloutEngineOptions,
    private readonly slots: WorkerSlot[],
    private readonly specs: WeightSpec[],
    private readonly threads: number,
  ) {
    this.policy = { jobId: "", version: opts.initialVersion ?? 0 };
    this.policies.set(0, this.policy);
    for (const s of slots) {
      s.worker.on("message", (m: FromWorker) => this.onMessage(s, m));
      // A crashed worker must not leave callers waiting forever.
      s.worker.on("error", (err) => this.failSlot(s, err));
      s.worker.on("exit", (code) => this.failSlot(s, new Error(`decode worker ${s.index} exited with code ${code}`)));
    }
  }

  static async create(opts: RolloutEngineOptions): Promise<OrtRolloutEngine> {
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`replicas must be a positive integer, got ${replicas}`);
    const threads = opts.intraOpNumThreads ?? Math.max(1, Math.floor(availableParallelism() / replicas));
    const specs = weightSpecsOf(opts.model.modelBytes);
    const slots = await Promise.all(
      Array.from({ length: replicas }, async (_, index) => {
        const init: WorkerInit = {
          index,
          modelBytes: opts.model.modelBytes,
          ...(opts.model.externalModelPath ? { externalModelPath: opts.model.externalModelPath } : {}),
          ...(opts.model.tokenizerVocabSize !== undefined ? { tokenizerVocabSize: opts.model.tokenizerVocabSize } : {}),
          manifest: opts.model.manifest,
          settings: { executionProvider: opts.executionProvider ?? "cpu", intraOpNumThreads: threads },
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
          intra_op_threads: threads,
          ...(ready.fallbackReason ? { fallback_reason: ready.fallbackReason } : {}),
        });
        return { index, worker, queued: 0, provider: ready.provider };
      }),
    );
    return new OrtRolloutEngine(opts, slots, specs, threads);
  }

  get policyVersion(): number {
    return this.policy.version;
  }

  get policyJobId(): string {
    return this.policy.jobId;
  }

  /** The job and version of a decode worker's weight serial. */
  private policyOf(serial: number): PolicyRef {
    return this.policies.get(serial) ?? this.policy;
  }

  info(): EngineInfo {
    return {
      name: this.opts.model.manifest.name,
      manifest: this.opts.model.manifest,
      modelFingerprint: this.opts.model.fingerprint ?? "",
      policyVersion: this.policy.version,
      policyJobId: this.policy.jobId,
      executionProvider: this.slots[0]!.provider,
      weights: this.specs,
      replicas: this.slots.length,
      intraOpNumThreads: this.threads,
    };
  }

  /**
   * Decodes `samples` candidates per request. Throws InvalidDecodeParamsError (field named) for
   * bad parameters or prompts that do not fit, DecodeAbortedError when `signal` fires.
   */
  async generateSamples(
    requests: readonly GenerateRequestItem[],
    paramsInput: DecodeParamsInput = {},
    opts: { signal?: AbortSignal; maxBatch?: number } = {},
  ): Promise<GenerateResult> {
    if (this.closed) throw new Error("rollout engine is closed");
    const t0 = performance.now();
    const { params, items } = this.prepare(requests, paramsInput);
    const m = this.opts.model.manifest;
    const codec = this.opts.model.codec;
    const serials = await this.dispatch(items, opts, (chunk, id) => ({ type: "generate", id, inputs: chunk.map((c) => c.input), params, postedAt: Date.now() }), (chunk, msg, slot) => {
      if (msg.type !== "result") throw new Error(`unexpected ${msg.type}`);
      this.opts.onBatch?.({
        worker: slot.index,
        batchSize: chunk.length,
        policyVersion: this.policyOf(msg.version).version,
        responseTokens: msg.results.reduce((a, r) => a + r.tokenIds.length, 0),
        nfe: msg.results.reduce((a, r) => a + r.nfe, 0),
        forwards: msg.forwards,
        queueSeconds: msg.queueSeconds,
        decodeSeconds: msg.decodeSeconds,
      });
      return chunk.map((c, k): GeneratedSample & { serial: number } => {
        const r = msg.results[k]!;
        const body = r.tokenIds.length > 0 && r.tokenIds[r.tokenIds.length - 1] === m.eos_id ? r.tokenIds.slice(0, -1) : r.tokenIds;
        return {
          promptId: c.req.promptId,
          sampleIndex: c.sampleIndex,
          promptTokenIds: c.promptIds,
          tokenIds: r.tokenIds,
          text: codec ? codec.decode(body) : "",
          finished: r.finished,
          serial: msg.version,
          policyVersion: this.policyOf(msg.version).version,
          policyJobId: this.policyOf(msg.version).jobId,
          nfe: r.nfe,
          timings: { queueSeconds: msg.queueSeconds, decodeSeconds: r.decodeSeconds },
          ...(r.commitSteps ? { commitSteps: Array.from(r.commitSteps.subarray(0, r.tokenIds.length)) } : {}),
        };
      });
    });
    const oldest = this.policyOf(Math.min(...serials.map((s) => s.serial), this.serial));
    const samples = serials.map(({ serial: _serial, ...sample }): GeneratedSample => sample);
    return {
      samples,
      policyVersion: oldest.version,
      policyJobId: oldest.jobId,
      seconds: (performance.now() - t0) / 1000,
    };
  }

  /**
   * Sends `items` to the decode workers in chunks of at most maxBatch (each chunk to the least
   * busy worker), cancels them all when `signal` fires, and returns what `collect` makes of each
   * chunk's answer, in item order.
   */
  private async dispatch<I, S>(
    items: readonly I[],
    opts: { signal?: AbortSignal; maxBatch?: number },
    post: (chunk: I[], id: number) => ToWorker,
    collect: (chunk: I[], msg: FromWorker, slot: WorkerSlot) => S[],
  ): Promise<S[]> {
    const maxBatch = opts.maxBatch ?? this.opts.maxBatch ?? DEFAULT_MAX_BATCH;
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

  /**
   * Resolved parameters and the samples to decode; throws InvalidDecodeParamsError. Also the
   * check of a request before it is queued (service/proto-rollout-engine.ts).
   */
  prepare(
    requests: readonly GenerateRequestItem[],
    paramsInput: DecodeParamsInput,
  ): { params: DecodeParams; items: PreparedSample[] } {
    const m = this.opts.model.manifest;
    const params = withModelLookahead(resolveDecodeParams(paramsInput), paramsInput, m);
    if (params.cache !== "none" && !m.cache_support.includes(params.cache)) {
      throw new InvalidDecodeParamsError(
        "cache",
        `cache ${params.cache} is not supported by model ${m.name} (supports: ${m.cache_support.join(", ") || "none"})`,
      );
    }
    const codec = this.opts.model.codec;
    const items: PreparedSample[] = [];
    requests.forEach((req, i) => {
      const samples = req.samples ?? 1;
      if (!Number.isInteger(samples) || samples < 1)
        throw new InvalidDecodeParamsError("samples_per_prompt", `samples_per_prompt must be a positive integer, got ${samples}`);
      let promptIds: number[];
      if (typeof req.prompt === "string") {
        if (!codec) throw new InvalidDecodeParamsError("prompts", "this model has no tokenizer: send prompt token ids");
        promptIds = codec.encode(req.prompt);
      } else promptIds = Array.from(req.prompt);
      if (promptIds.some((t) => !Number.isInteger(t) || t < 0 || t >= m.vocab_size || t === m.mask_id)) {
        throw new InvalidDecodeParamsError("prompts", `prompt ${req.promptId} has token ids outside the vocabulary (or MASK)`);
      }
      if (promptIds.length + params.max_new_tokens > m.max_seq_len) {
        throw new InvalidDecodeParamsError(
          "max_new_tokens",
          `max_new_tokens ${params.max_new_tokens} + prompt ${req.promptId} length ${promptIds.length} exceeds max_seq_len ${m.max_seq_len}`,
        );
      }
      const base = req.seed ?? deriveSeed(params.seed, i);
      for (let g = 0; g < samples; g++)
        items.push({ req, promptIds, sampleIndex: g, input: { prompt: promptIds, seed: deriveSeed(base, g) } });
    });

    return { params, items };
  }

  /**
   * Infill (runtime/infill-requests.ts): fills the middle between each item's prefix and suffix,
   * `samples` per item, on the decode workers (variable length when the model declares an expand
   * token, unless `variable` is false). Throws InvalidDecodeParamsError naming the field,
   * DecodeAbortedError when `signal` fires.
   */
  async infillSamples(
    requests: readonly InfillRequestItem[],
    opts: InfillRequestOptions & { signal?: AbortSignal; maxBatch?: number } = {},
  ): Promise<InfillResult> {
    if (this.closed) throw new Error("rollout engine is closed");
    const t0 = performance.now();
    const { params, items } = this.prepareInfill(requests, opts);
    const codec = this.opts.model.codec;
    const serials = await this.dispatch(items, opts, (chunk, id) => ({ type: "infill", id, inputs: chunk.map((c) => c.input), params, postedAt: Date.now() }), (chunk, msg, slot) => {
      if (msg.type !== "infill-result") throw new Error(`unexpected ${msg.type}`);
      const policy = this.policyOf(msg.version);
      this.opts.onBatch?.({
        worker: slot.index,
        batchSize: chunk.length,
        policyVersion: policy.version,
        responseTokens: msg.results.reduce((a, r) => a + r.middleIds.length, 0),
        nfe: msg.results.reduce((a, r) => a + r.nfe, 0),
        forwards: msg.forwards,
        queueSeconds: msg.queueSeconds,
        decodeSeconds: msg.decodeSeconds,
      });
      return chunk.map((c, k): InfilledSample & { serial: number } => {
        const r = msg.results[k]!;
        return {
          itemId: c.req.itemId,
          sampleIndex: c.sampleIndex,
          prefixTokenIds: c.prefixIds,
          suffixTokenIds: c.suffixIds,
          middleTokenIds: r.middleIds,
          middleText: codec ? codec.decode(r.middleIds) : "",
          serial: msg.version,
          policyVersion: policy.version,
          policyJobId: policy.jobId,
          nfe: r.nfe,
          ...(r.commitSteps ? { commitSteps: r.commitSteps } : {}),
          ...(r.events ? { events: r.events } : {}),
          timings: { queueSeconds: msg.queueSeconds, decodeSeconds: r.decodeSeconds },
        };
      });
    });
    const oldest = this.policyOf(Math.min(...serials.map((s) => s.serial), this.serial));
    return {
      samples: serials.map(({ serial: _serial, ...sample }): InfilledSample => sample),
      policyVersion: oldest.version,
      policyJobId: oldest.jobId,
      seconds: (performance.now() - t0) / 1000,
      variable: params.variable,
    };
  }

  /** The check of an infill request before it is queued (InvalidDecodeParamsError naming the field). */
  prepareInfill(requests: readonly InfillRequestItem[], opts: InfillRequestOptions = {}): PreparedInfill {
    const codec = this.opts.model.codec;
    return prepareInfill(this.opts.model.manifest, codec ? (t) => codec.encode(t) : undefined, requests, opts);
  }

  /**
   * Validates `tensors` (names, dtypes, shapes, finite values) against the model, prepares a
   * session of the new version on every worker, then switches all of them. Batches in flight
   * finish on the version they started with. On any failure the old version keeps serving.
   */
  swapWeights(version: number, tensors: readonly HostTensor[], opts: SwapOptions = {}): Promise<SwapResult> {
    const run = async (): Promise<SwapResult> => {
      const t0 = performance.now();
      const next: PolicyRef = { jobId: opts.jobId ?? this.policy.jobId, version };
      if (!Number.isSafeInteger(version) || version < 0) throw new WeightValidationError(`version ${version} must be a non-negative integer`);
      if (opts.ifServing && !samePolicy(opts.ifServing, this.policy)) {
        throw new SupersededSwapError(`${formatPolicy(next)} was meant to replace ${formatPolicy(opts.ifServing)}, but ${formatPolicy(this.policy)} is served now`);
      }
      if (!acceptsPolicy(next, this.policy)) {
        throw new WeightValidationError(
          next.jobId === this.policy.jobId
            ? `version ${version} must be an integer greater than the serving version ${this.policy.version} of the same job`
            : `${formatPolicy(next)} cannot replace ${formatPolicy(this.policy)}`,
        );
      }
      const weights = validateWeights(this.specs, tensors);
      const entries = [...weights];
      const serial = this.serial + 1;
      const results = await Promise.allSettled(
        this.slots.map((s) => this.request(s, `prepare:${serial}`, { type: "prepare", version: serial, weights: entries })),
      );
      const failed = results.find((r) => r.status === "rejected" || r.value.type !== "prepared");
      if (failed) {
        for (const s of this.slots) s.worker.postMessage({ type: "discard", version: serial } satisfies ToWorker);
        const why = failed.status === "rejected" ? (failed.reason as Error).message : "unexpected reply";
        throw new WeightValidationError(`weights of ${formatPolicy(next)} could not be loaded: ${why}`);
      }
      await Promise.all(this.slots.map((s) => this.request(s, `commit:${serial}`, { type: "commit", version: serial })));
      this.serial = serial;
      this.policy = next;
      this.policies.set(serial, next);
      // Batches in flight report the serial they started with; a few swaps back is plenty.
      for (const k of this.policies.keys()) if (k < serial - KEPT_POLICY_SERIALS) this.policies.delete(k);
      const swapSeconds = (performance.now() - t0) / 1000;
      this.opts.logger?.info("weights swapped", { version, job: next.jobId, swap_seconds: swapSeconds });
      return { version, jobId: next.jobId, swapSeconds };
    };
    const p = this.swapChain.then(run, run);
    this.swapChain = p.catch(() => undefined);
    return p;
  }

  get workerId(): string {
    return this.opts.workerId ?? `${hostname()}:${process.pid}`;
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
    if (!this.closed) this.opts.logger?.error("decode worker failed", { worker: slot.index, err });
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
