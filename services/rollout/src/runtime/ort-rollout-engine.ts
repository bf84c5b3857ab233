/**
 * The rollout runtime's facade: `generate` (prompts × samples → tokens, text, policy version, NFE,
 * timings), `infill`, validated hot weight swaps that switch every worker between batches, and
 * cancellation, over one model. In domain terms (requests, resolved parameters, domain errors);
 * service/proto-rollout-engine.ts adapts it to rollout.proto. The parts live beside it:
 * decode-worker-pool.ts (threads and dispatch), weight-versions.ts (served versions and the swap
 * protocol), generate-requests.ts / infill-requests.ts (request checks), rollout-model.ts (loading).
 */
import { availableParallelism, hostname } from "node:os";
import type { HostTensor, Logger } from "@rlmesh/shared";
import type { ModelManifest } from "@rlmesh/shared/model/index";
import type { DecodeParamsInput } from "../decoding/decode-params.js";
import { DecodeWorkerPool } from "./decode-worker-pool.js";
import type { ExecutionProvider } from "./execution-provider.js";
import { prepareGenerate, type GeneratedSample, type GenerateRequestItem, type GenerateResult, type PreparedGenerate } from "./generate-requests.js";
import { chooseLengthCandidate, prepareInfill, type InfilledSample, type InfillRequestItem, type InfillRequestOptions, type InfillResult, type PreparedInfill } from "./infill-requests.js";
import type { RolloutModel } from "./rollout-model.js";
import { weightSpecsOf, type WeightSpec } from "./weight-validation.js";
import { WeightVersions, type SwapOptions, type SwapResult } from "./weight-versions.js";
import type { ForwardCounts } from "./worker-protocol.js";

export { loadRolloutModel, type RolloutModel, type TextCodec } from "./rollout-model.js";
export type { GeneratedSample, GenerateRequestItem, GenerateResult } from "./generate-requests.js";
export { SupersededSwapError, type SwapOptions, type SwapResult } from "./weight-versions.js";

/** Samples decoded together by one worker. */
export const DEFAULT_MAX_BATCH = 16;

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

export class OrtRolloutEngine {
  private closed = false;

  private constructor(
    private readonly opts: RolloutEngineOptions,
    private readonly pool: DecodeWorkerPool,
    private readonly versions: WeightVersions,
    private readonly specs: WeightSpec[],
    private readonly threads: number,
  ) {}

  static async create(opts: RolloutEngineOptions): Promise<OrtRolloutEngine> {
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`replicas must be a positive integer, got ${replicas}`);
    const threads = opts.intraOpNumThreads ?? Math.max(1, Math.floor(availableParallelism() / replicas));
    const specs = weightSpecsOf(opts.model.modelBytes);
    const pool = await DecodeWorkerPool.start({
      model: opts.model,
      replicas,
      intraOpNumThreads: threads,
      executionProvider: opts.executionProvider ?? "cpu",
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
    const versions = new WeightVersions(opts.initialVersion ?? 0, specs, pool, opts.logger);
    return new OrtRolloutEngine(opts, pool, versions, specs, threads);
  }

  get policyVersion(): number {
    return this.versions.current.version;
  }

  get policyJobId(): string {
    return this.versions.current.jobId;
  }

  info(): EngineInfo {
    return {
      name: this.opts.model.manifest.name,
      manifest: this.opts.model.manifest,
      modelFingerprint: this.opts.model.fingerprint ?? "",
      policyVersion: this.versions.current.version,
      policyJobId: this.versions.current.jobId,
      executionProvider: this.pool.provider,
      weights: this.specs,
      replicas: this.pool.size,
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
    const post = (chunk: PreparedGenerate["items"], id: number) => ({ type: "generate" as const, id, inputs: chunk.map((c) => c.input), params, postedAt: Date.now() });
    const serials = await this.pool.dispatch(items, this.dispatchOptions(opts), post, (chunk, msg, slot) => {
      if (msg.type !== "result") throw new Error(`unexpected ${msg.type}`);
      const policy = this.versions.policyOf(msg.version);
      this.reportBatch(slot.index, chunk.length, policy.version, msg, msg.results.reduce((a, r) => a + r.tokenIds.length, 0));
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
          policyVersion: policy.version,
          policyJobId: policy.jobId,
          nfe: r.nfe,
          timings: { queueSeconds: msg.queueSeconds, decodeSeconds: r.decodeSeconds },
          ...(r.commitSteps ? { commitSteps: Array.from(r.commitSteps.subarray(0, r.tokenIds.length)) } : {}),
        };
      });
    });
    const oldest = this.versions.oldestOf(serials.map((s) => s.serial));
    const samples = serials.map(({ serial: _serial, ...sample }): GeneratedSample => sample);
    return {
      samples,
      policyVersion: oldest.version,
      policyJobId: oldest.jobId,
      seconds: (performance.now() - t0) / 1000,
    };
  }

  /** One decoded batch to the onBatch hook (metrics): Generate and Infill report alike. */
  private reportBatch(
    worker: number,
    batchSize: number,
    policyVersion: number,
    msg: { results: readonly { nfe: number }[]; forwards: ForwardCounts; queueSeconds: number; decodeSeconds: number },
    responseTokens: number,
  ): void {
    this.opts.onBatch?.({
      worker,
      batchSize,
      policyVersion,
      responseTokens,
      nfe: msg.results.reduce((a, r) => a + r.nfe, 0),
      forwards: msg.forwards,
      queueSeconds: msg.queueSeconds,
      decodeSeconds: msg.decodeSeconds,
    });
  }

  /**
   * Resolved parameters and the samples to decode (runtime/generate-requests.ts); throws
   * InvalidDecodeParamsError. Also the check of a request before it is queued
   * (service/proto-rollout-engine.ts).
   */
  prepare(requests: readonly GenerateRequestItem[], paramsInput: DecodeParamsInput): PreparedGenerate {
    const codec = this.opts.model.codec;
    return prepareGenerate(this.opts.model.manifest, codec ? (t) => codec.encode(t) : undefined, requests, paramsInput);
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
    const post = (chunk: PreparedInfill["items"], id: number) => ({ type: "infill" as const, id, inputs: chunk.map((c) => c.input), params, postedAt: Date.now() });
    const serials = await this.pool.dispatch(items, this.dispatchOptions(opts), post, (chunk, msg, slot) => {
      if (msg.type !== "infill-result") throw new Error(`unexpected ${msg.type}`);
      const policy = this.versions.policyOf(msg.version);
      // A length search's sample is the candidate chosen by score and syntax: its own decode describes it.
      const chosen = chunk.map((c, k) => {
        const r = msg.results[k]!;
        const pick = chooseLengthCandidate(r, params, codec ? (ids) => codec.decode([...c.prefixIds, ...ids, ...c.suffixIds]) : undefined);
        return { r, pick, seq: pick ? { ...r, ...pick.chosen.decode, middleIds: pick.chosen.middleIds } : r };
      });
      this.reportBatch(slot.index, chunk.length, policy.version, msg, chosen.reduce((a, x) => a + x.seq.middleIds.length, 0));
      return chunk.map((c, k): InfilledSample & { serial: number } => {
        const { r, pick, seq } = chosen[k]!;
        return {
          itemId: c.req.itemId,
          sampleIndex: c.sampleIndex,
          prefixTokenIds: c.prefixIds,
          suffixTokenIds: c.suffixIds,
          middleTokenIds: seq.middleIds,
          middleText: codec ? codec.decode(seq.middleIds) : "",
          serial: msg.version,
          policyVersion: policy.version,
          policyJobId: policy.jobId,
          nfe: r.nfe,
          expands: seq.expands,
          deletes: seq.deletes,
          logProb: seq.logProb,
          ...(pick ? { lengthSearch: { candidates: r.candidates!.length, screenedOut: pick.screenedOut, variableLength: pick.variableLength } } : {}),
          ...(seq.commitSteps ? { commitSteps: seq.commitSteps } : {}),
          ...(seq.events ? { events: seq.events } : {}),
          timings: { queueSeconds: msg.queueSeconds, decodeSeconds: r.decodeSeconds },
        };
      });
    });
    const oldest = this.versions.oldestOf(serials.map((s) => s.serial));
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
   * session of the new version on every worker, then switches all of them (weight-versions.ts).
   * Batches in flight finish on the version they started with. On any failure the old version
   * keeps serving.
   */
  swapWeights(version: number, tensors: readonly HostTensor[], opts: SwapOptions = {}): Promise<SwapResult> {
    return this.versions.swap(version, tensors, opts);
  }

  get workerId(): string {
    return this.opts.workerId ?? `${hostname()}:${process.pid}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.pool.close();
  }

  private dispatchOptions(opts: { signal?: AbortSignal; maxBatch?: number }): { signal?: AbortSignal; maxBatch: number } {
    return { ...(opts.signal ? { signal: opts.signal } : {}), maxBatch: opts.maxBatch ?? this.opts.maxBatch ?? DEFAULT_MAX_BATCH };
  }
}
