// jax-runtime must be evaluated before @jax-js/jax (it installs the Node polyfills + Worker shim).
import { jit, nn, numpy as np, valueAndGrad } from "./jax-runtime.js";
import { splitGraph, type SplitGraph } from "./split-graph.js";
import type { Array as JaxArray } from "@jax-js/jax";
import { ONNXModel } from "@jax-js/onnx";

import {
  layerName,
  ATTENTION_MASK,
  INPUT_IDS,
  LOGITS,
  modelBytes,
  parseModel,
  POSITION_IDS,
  readWeights,
  toDifferentiableGraph,
} from "@rlmesh/shared/model/index";
import type { LoadedModel } from "@rlmesh/shared/model/index";

/** A float32 tensor by name, flat row-major (the learner's optimizer format). */
export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}
export type WeightTensors = Record<string, WeightTensor>;

/**
 * A batch of full sequences (prompt + response, no KV cache), flat row-major [B, T].
 * `targets[b,t]` is the token whose log-probability is read at position t — for masked
 * diffusion, the clean token at a masked position. Always in position space: for a
 * shifted-logits model (Dream) the policy reads position t's distribution from logit row t − 1
 * itself (see `shiftedLogits`), and the caller never shifts.
 */
export interface TokenBatch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  positionIds: Int32Array;
  /** 1 = real key, 0 = padding that no position may attend to. */
  attentionMask: Float32Array;
  targets: Int32Array;
  /**
   * 1 at the positions whose log-probabilities the caller reads (optional). A split-mode policy
   * applies the LM head only there and returns 0 elsewhere; a whole-graph policy ignores it.
   */
  readMask?: Uint8Array;
}

/**
 * How the policy evaluates the graph: `whole-graph` runs the ONNX graph as it is (one-hot
 * embedding matmul, LM head at every position); `split` runs the embedding as a gather and the
 * LM head only at read positions (model/split-graph.ts), falling back to `whole-graph` when the
 * graph does not have that shape. Both give the same log-probs and gradients up to float
 * summation order.
 */
export type JaxPolicyMode = "whole-graph" | "split";

/**
 * Rows of the gathered LM head: half of the batch's positions, or all of them when more are read
 * (one coupled pass pair reads each response position once, so usually half is enough). Two
 * shapes per batch shape at most, so the jitted step is not recompiled for every count of read
 * positions (a compile costs far more than the head's unread rows; see bench learner --profile).
 */
export function headRows(positions: number, read: number): number {
  const half = Math.ceil(positions / 2);
  return read <= half ? half : positions;
}

/** A jax-js loss over per-token log-probs [B,T] and extra [B,T] float inputs; returns a scalar. */
export type LogProbLoss = (logProbs: JaxArray, extras: Record<string, JaxArray>) => JaxArray;

export interface GradResult {
  loss: number;
  /** log p(targets) at every position [B*T] from the same forward pass. */
  logProbs: Float32Array;
  grads: WeightTensors;
}

type Params = Record<string, JaxArray>;

/**
 * The rollout's ONNX graph, evaluated and differentiated by jax-js. Weights are inputs of the
 * learner's copy of the graph (see toDifferentiableGraph), so every call takes them explicitly;
 * nothing is cached between calls except the jit-compiled kernels per batch shape.
 * Requires `await initJax()` first.
 */
export class JaxPolicy {
  readonly weightNames: readonly string[];
  readonly vocabSize: number;
  private readonly onnx: ONNXModel;
  private readonly initial: WeightTensors;
  private readonly jitted = new Map<LogProbLoss | "weighted" | "logprobs" | "logits", unknown>();
  private readonly splitJitted = new Map<LogProbLoss | "logprobs", unknown>();
  /** The body graph and its ends (split mode only). */
  private readonly split: { graph: SplitGraph; body: ONNXModel; dModel: number } | null;
  /**
   * Dream's convention: logit row i predicts token i + 1, so position t's log-prob is read
   * from row t − 1. Position 0 has no row of its own (Dream reuses row 0 there): it may not be
   * read, and its reported log-prob is 0.
   */
  readonly shiftedLogits: boolean;

  private constructor(onnx: ONNXModel, initial: WeightTensors, vocabSize: number, split: SplitGraph | null, shiftedLogits: boolean) {
    this.shiftedLogits = shiftedLogits;
    this.onnx = onnx;
    this.initial = initial;
    this.weightNames = Object.keys(initial);
    this.vocabSize = vocabSize;
    const e = split ? initial[split.embeddingWeight] : undefined;
    this.split =
      split && e?.shape.length === 2 && e.shape[0] === vocabSize
        ? { graph: split, body: new ONNXModel(split.bodyBytes as Uint8Array<ArrayBuffer>), dModel: e.shape[1]! }
        : null;
  }

  /** The mode the policy actually runs (`split` falls back to `whole-graph` on other graphs). */
  get mode(): JaxPolicyMode {
    return this.split ? "split" : "whole-graph";
  }

  /**
   * From the bytes of the rollout's model.onnx: every float initializer of at least 2 elements
   * whose name is not `const.*` is a trainable weight.
   */
  static fromModelBytes(
    bytes: Uint8Array,
    opts: { nLayers: number; vocabSize: number; pastInputNames?: string[]; mode?: JaxPolicyMode; shiftedLogits?: boolean },
  ): JaxPolicy {
    const model = parseModel(bytes);
    const all = readWeights(model);
    const names = [...all.keys()].filter((n) => !n.startsWith("const."));
    const initial: WeightTensors = {};
    for (const n of names) initial[n] = all.get(n)!;
    const graphInputs = new Set(model.graph!.input.map((v) => v.name));
    const past = opts.pastInputNames ?? [];
    if (!opts.pastInputNames) {
      for (let i = 0; i < opts.nLayers; i++) past.push(`past_key_${i}`, `past_value_${i}`);
    }
    const diffGraph = toDifferentiableGraph(
      model,
      names,
      past.filter((n) => graphInputs.has(n)),
    );
    const onnx = new ONNXModel(modelBytes(diffGraph) as Uint8Array<ArrayBuffer>);
    const split = opts.mode === "split" ? splitGraph(diffGraph, names) : null;
    return new JaxPolicy(onnx, initial, opts.vocabSize, split, opts.shiftedLogits ?? false);
  }

  /** From a directory validated by loadModel (uses the manifest's layer count, vocab and past names). */
  static fromLoadedModel(loaded: LoadedModel, mode: JaxPolicyMode = "whole-graph"): JaxPolicy {
    const m = loaded.manifest;
    const past: string[] = [];
    for (let i = 0; i < m.n_layers; i++) {
      if (m.inputs.past_key) past.push(layerName(m.inputs.past_key, i));
      if (m.inputs.past_value) past.push(layerName(m.inputs.past_value, i));
    }
    return JaxPolicy.fromModelBytes(loaded.modelBytes, {
      nLayers: m.n_layers,
      vocabSize: m.vocab_size,
      pastInputNames: past,
      mode,
      shiftedLogits: m.shifted_logits,
    });
  }

  /** A copy of the weights stored in the model file. */
  initialWeights(): WeightTensors {
    const out: WeightTensors = {};
    for (const [k, v] of Object.entries(this.initial)) out[k] = { shape: [...v.shape], data: Float32Array.from(v.data) };
    return out;
  }

  /** Logits [B*T*V] (forward only), the graph's rows as they are (not shifted back for a shifted-logits model). */
  async logits(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
    const fn = this.cached("logits", () =>
      jit((params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray) => this.forward(params, ids, pos, mask)),
    ) as (p: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray) => JaxArray;
    const [ids, pos, mask] = this.batchArrays(batch);
    return (await fn(this.params(weights), ids, pos, mask).data()) as Float32Array;
  }

  /** log p(targets[b,t]) at every position [B*T] (forward only). */
  async tokenLogProbs(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
    if (this.shiftedLogits) {
      const rows = toRowSpace(batch, {});
      return toPositionSpace(await this.rowTokenLogProbs(weights, rows.batch), batch);
    }
    return this.rowTokenLogProbs(weights, batch);
  }

  private async rowTokenLogProbs(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
    if (this.split) return this.splitTokenLogProbs(weights, batch);
    const fn = this.cached("logprobs", () =>
      jit((params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, targets: JaxArray) =>
        this.logProbsOf(this.forward(params, ids, pos, mask), targets),
      ),
    ) as (p: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, t: JaxArray) => JaxArray;
    const [ids, pos, mask, targets] = this.batchArrays(batch);
    return (await fn(this.params(weights), ids, pos, mask, targets).data()) as Float32Array;
  }

  /**
   * loss = −Σ_{b,t} tokenWeights[b,t] · log p(targets[b,t]), its gradient w.r.t. every weight,
   * and the log-probs. Masked-diffusion SFT passes mask/(t·N); a policy-gradient step passes
   * A·ratio·mask/(t·N) (the derivative of its surrogate w.r.t. each log-prob).
   */
  async weightedNllGrad(weights: WeightTensors, batch: TokenBatch, tokenWeights: Float32Array): Promise<GradResult> {
    if (this.shiftedLogits) {
      this.checkLength("tokenWeights", tokenWeights.length, batch);
      const rows = toRowSpace(batch, { tokenWeights });
      const r = await this.rowWeightedNllGrad(weights, rows.batch, rows.extras["tokenWeights"]!);
      return { ...r, logProbs: toPositionSpace(r.logProbs, batch) };
    }
    return this.rowWeightedNllGrad(weights, batch, tokenWeights);
  }

  private async rowWeightedNllGrad(weights: WeightTensors, batch: TokenBatch, tokenWeights: Float32Array): Promise<GradResult> {
    const fn = this.cached("weighted", () =>
      jit(
        valueAndGrad(
          (params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, targets: JaxArray, w: JaxArray): [JaxArray, JaxArray] => {
            const lp = this.logProbsOf(this.forward(params, ids, pos, mask), targets);
            return [lp.ref.mul(w).sum().mul(-1), lp];
          },
          { hasAux: true },
        ),
      ),
    ) as (p: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, t: JaxArray, w: JaxArray) => [[JaxArray, JaxArray], Params];
    this.checkLength("tokenWeights", tokenWeights.length, batch);
    const [ids, pos, mask, targets] = this.batchArrays(batch);
    const w = np.array(tokenWeights, { shape: [batch.batchSize, batch.seqLen] });
    const [[loss, lp], grads] = fn(this.params(weights), ids, pos, mask, targets, w);
    return this.collect(loss, lp, grads);
  }

  /**
   * Any jax-js loss of the per-token log-probs and extra [B,T] inputs (e.g. the GRPO clipped
   * surrogate with old log-probs, advantages and mask weights), with its gradient.
   */
  async lossAndGrad(
    weights: WeightTensors,
    batch: TokenBatch,
    loss: LogProbLoss,
    extras: Record<string, Float32Array>,
  ): Promise<GradResult> {
    if (this.shiftedLogits) {
      for (const [k, v] of Object.entries(extras)) this.checkLength(`extras.${k}`, v.length, batch);
      const rows = toRowSpace(batch, extras);
      const r = await this.rowLossAndGrad(weights, rows.batch, loss, rows.extras);
      return { ...r, logProbs: toPositionSpace(r.logProbs, batch) };
    }
    return this.rowLossAndGrad(weights, batch, loss, extras);
  }

  private async rowLossAndGrad(
    weights: WeightTensors,
    batch: TokenBatch,
    loss: LogProbLoss,
    extras: Record<string, Float32Array>,
  ): Promise<GradResult> {
    if (this.split) return this.splitLossAndGrad(weights, batch, loss, extras);
    const fn = this.cached(loss, () =>
      jit(
        valueAndGrad(
          (
            params: Params,
            ids: JaxArray,
            pos: JaxArray,
            mask: JaxArray,
            targets: JaxArray,
            ex: Record<string, JaxArray>,
          ): [JaxArray, JaxArray] => {
            const lp = this.logProbsOf(this.forward(params, ids, pos, mask), targets);
            return [loss(lp.ref, ex), lp];
          },
          { hasAux: true },
        ),
      ),
    ) as (
      p: Params,
      ids: JaxArray,
      pos: JaxArray,
      mask: JaxArray,
      t: JaxArray,
      ex: Record<string, JaxArray>,
    ) => [[JaxArray, JaxArray], Params];
    const ex: Record<string, JaxArray> = {};
    for (const [k, v] of Object.entries(extras)) {
      this.checkLength(`extras.${k}`, v.length, batch);
      ex[k] = np.array(v, { shape: [batch.batchSize, batch.seqLen] });
    }
    const [ids, pos, mask, targets] = this.batchArrays(batch);
    const [[l, lp], grads] = fn(this.params(weights), ids, pos, mask, targets, ex);
    return this.collect(l, lp, grads);
  }

  /** Frees the graph's constants and compiled kernels. */
  dispose(): void {
    for (const f of [...this.jitted.values(), ...this.splitJitted.values()]) (f as { dispose?: () => void }).dispose?.();
    this.jitted.clear();
    this.splitJitted.clear();
    this.onnx.dispose();
    this.split?.body.dispose();
  }

  /**
   * Log-probs [K] of `targets` at flat positions `rows` [K] of the batch: embedding by gather, the
   * body graph, then the LM head on the K gathered hidden states only.
   */
  private splitLogProbsOf(
    params: Params,
    ids: JaxArray,
    pos: JaxArray,
    mask: JaxArray,
    rows: JaxArray,
    rowValid: JaxArray,
    targets: JaxArray,
  ): JaxArray {
    const { graph: g, body, dModel } = this.split!;
    const [B, T] = ids.shape as [number, number];
    const inputs: Params = { ...params };
    for (const w of g.weightsNotInBody) delete inputs[w];
    const embedding = params[g.embeddingWeight]!;
    const head = params[g.headWeight]!;
    // take(E, ids[B, T]) is [B, T, D] with no reshape after it: the scatter-add of its gradient
    // must read a materialized array (jax-js cannot feed a routine a view).
    inputs[g.embeddingOutput] = np.take(g.headWeight === g.embeddingWeight ? embedding.ref : embedding, g.bodyTakesInputIds ? ids.ref : ids, 0);
    if (g.bodyTakesInputIds) inputs[INPUT_IDS] = ids;
    inputs[POSITION_IDS] = pos;
    inputs[ATTENTION_MASK] = mask;
    for (const w of g.weightsNotInBody) if (w !== g.embeddingWeight && w !== g.headWeight) params[w]!.dispose();
    const out = body.run(inputs);
    const hidden = out[g.hiddenOutput];
    if (!hidden) throw new Error("jax policy: body graph has no hidden-state output");
    for (const [k, v] of Object.entries(out)) if (k !== g.hiddenOutput) v.dispose();
    // × rowValid (1 on read rows, 0 on bucket padding): besides zeroing the padding, it makes the
    // gradient reaching the gather a materialized array, which jax-js's scatter-add requires.
    const picked = np.take(hidden.reshape([B * T, dModel]), rows, 0).mul(rowValid);
    const logits = np.matmul(picked, g.headTransposed ? head.transpose() : head);
    return this.logProbsOf(logits, targets);
  }

  /** The read positions of a batch as gather indices (padded to a head-row bucket with index 0). */
  private readRows(batch: TokenBatch): { rows: Int32Array; read: number } {
    const n = batch.batchSize * batch.seqLen;
    const m = batch.readMask;
    if (m && m.length !== n) throw new Error(`jax policy: readMask has ${m.length} values, expected ${batch.batchSize}×${batch.seqLen}`);
    let read = 0;
    if (m) for (let i = 0; i < n; i++) read += m[i] ? 1 : 0;
    else read = n;
    const rows = new Int32Array(m ? headRows(n, read) : n);
    if (m) {
      let k = 0;
      for (let i = 0; i < n; i++) if (m[i]) rows[k++] = i;
    } else for (let i = 0; i < n; i++) rows[i] = i;
    return { rows, read };
  }

  /** The gather indices [K] and the read-row indicator [K, 1] as jax-js arrays. */
  private rowArrays(rows: Int32Array, read: number): [JaxArray, JaxArray] {
    const valid = new Float32Array(rows.length);
    valid.fill(1, 0, read);
    return [np.array(rows, { dtype: np.int32 }), np.array(valid, { shape: [rows.length, 1] })];
  }

  private gatherRows<A extends Float32Array | Int32Array>(src: A, rows: Int32Array, read: number, make: (n: number) => A): A {
    const out = make(rows.length);
    for (let k = 0; k < read; k++) out[k] = src[rows[k]!]!;
    return out;
  }

  private scatterRows(values: Float32Array, rows: Int32Array, read: number, n: number): Float32Array {
    const out = new Float32Array(n);
    for (let k = 0; k < read; k++) out[rows[k]!] = values[k]!;
    return out;
  }

  private async splitTokenLogProbs(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
    const fn = this.splitCached("logprobs", () =>
      jit((params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, rows: JaxArray, valid: JaxArray, targets: JaxArray) =>
        this.splitLogProbsOf(params, ids, pos, mask, rows, valid, targets),
      ),
    ) as (p: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray, rows: JaxArray, valid: JaxArray, t: JaxArray) => JaxArray;
    const [ids, pos, mask, allTargets] = this.batchArrays(batch);
    allTargets.dispose();
    const { rows, read } = this.readRows(batch);
    const targets = this.gatherRows(batch.targets, rows, read, (n) => new Int32Array(n));
    const lp = (await fn(this.params(weights), ids, pos, mask, ...this.rowArrays(rows, read), np.array(targets, { dtype: np.int32 })).data()) as Float32Array;
    return this.scatterRows(lp, rows, read, batch.batchSize * batch.seqLen);
  }

  private async splitLossAndGrad(
    weights: WeightTensors,
    batch: TokenBatch,
    loss: LogProbLoss,
    extras: Record<string, Float32Array>,
  ): Promise<GradResult> {
    const fn = this.splitCached(loss, () =>
      jit(
        valueAndGrad(
          (
            params: Params,
            ids: JaxArray,
            pos: JaxArray,
            mask: JaxArray,
            rows: JaxArray,
            valid: JaxArray,
            targets: JaxArray,
            ex: Record<string, JaxArray>,
          ): [JaxArray, JaxArray] => {
            const lp = this.splitLogProbsOf(params, ids, pos, mask, rows, valid, targets);
            return [loss(lp.ref, ex), lp];
          },
          { hasAux: true },
        ),
      ),
    ) as (
      p: Params,
      ids: JaxArray,
      pos: JaxArray,
      mask: JaxArray,
      rows: JaxArray,
      valid: JaxArray,
      t: JaxArray,
      ex: Record<string, JaxArray>,
    ) => [[JaxArray, JaxArray], Params];
    const [ids, pos, mask, allTargets] = this.batchArrays(batch);
    allTargets.dispose();
    const { rows, read } = this.readRows(batch);
    const targets = this.gatherRows(batch.targets, rows, read, (n) => new Int32Array(n));
    const ex: Record<string, JaxArray> = {};
    for (const [k, v] of Object.entries(extras)) {
      this.checkLength(`extras.${k}`, v.length, batch);
      ex[k] = np.array(this.gatherRows(v, rows, read, (n) => new Float32Array(n)));
    }
    const [[l, lp], grads] = fn(this.params(weights), ids, pos, mask, ...this.rowArrays(rows, read), np.array(targets, { dtype: np.int32 }), ex);
    const r = await this.collect(l, lp, grads);
    return { ...r, logProbs: this.scatterRows(r.logProbs, rows, read, batch.batchSize * batch.seqLen) };
  }

  private splitCached(key: LogProbLoss | "logprobs", make: () => unknown): unknown {
    let f = this.splitJitted.get(key);
    if (!f) {
      f = make();
      this.splitJitted.set(key, f);
    }
    return f;
  }

  private cached(key: LogProbLoss | "weighted" | "logprobs" | "logits", make: () => unknown): unknown {
    let f = this.jitted.get(key);
    if (!f) {
      f = make();
      this.jitted.set(key, f);
    }
    return f;
  }

  private forward(params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray): JaxArray {
    const out = this.onnx.run({ ...params, [INPUT_IDS]: ids, [POSITION_IDS]: pos, [ATTENTION_MASK]: mask });
    const logits = out[LOGITS];
    if (!logits) throw new Error("jax policy: graph has no logits output");
    for (const [k, v] of Object.entries(out)) if (k !== LOGITS) v.dispose();
    return logits;
  }

  private logProbsOf(logits: JaxArray, targets: JaxArray): JaxArray {
    return nn.logSoftmax(logits, -1).mul(nn.oneHot(targets, this.vocabSize)).sum(-1);
  }

  private params(weights: WeightTensors): Params {
    const p: Params = {};
    for (const name of this.weightNames) {
      const w = weights[name];
      if (!w) throw new Error(`jax policy: missing weight ${name}`);
      p[name] = np.array(w.data, { shape: w.shape });
    }
    return p;
  }

  private checkLength(what: string, n: number, batch: TokenBatch): void {
    if (n !== batch.batchSize * batch.seqLen) {
      throw new Error(`jax policy: ${what} has ${n} values, expected ${batch.batchSize}×${batch.seqLen}`);
    }
  }

  private batchArrays(batch: TokenBatch): [JaxArray, JaxArray, JaxArray, JaxArray] {
    const shape = [batch.batchSize, batch.seqLen];
    this.checkLength("inputIds", batch.inputIds.length, batch);
    this.checkLength("positionIds", batch.positionIds.length, batch);
    this.checkLength("attentionMask", batch.attentionMask.length, batch);
    this.checkLength("targets", batch.targets.length, batch);
    return [
      np.array(batch.inputIds, { shape, dtype: np.int32 }),
      np.array(batch.positionIds, { shape, dtype: np.int32 }),
      np.array(batch.attentionMask, { shape }),
      np.array(batch.targets, { shape, dtype: np.int32 }),
    ];
  }

  private async collect(loss: JaxArray, lp: JaxArray, grads: Params): Promise<GradResult> {
    const lossValue = ((await loss.data()) as Float32Array)[0]!;
    const logProbs = (await lp.data()) as Float32Array;
    const out: WeightTensors = {};
    for (const name of this.weightNames) {
      const g = grads[name]!;
      out[name] = { shape: [...g.shape], data: (await g.data()) as Float32Array };
    }
    return { loss: lossValue, logProbs, grads: out };
  }
}

/**
 * A shifted-logits batch moved from position space to logit-row space: row r reads what
 * position r + 1 reads (its target, read flag, per-position weights and extras); the last row of
 * each sequence predicts past the sequence and reads nothing. Every loss of this policy is a sum
 * of per-position terms within a row, so the move changes no value and no gradient. Position 0
 * has no row of its own: reading it (readMask, or a non-zero token weight when there is no
 * readMask) is an error.
 */
export function toRowSpace(
  batch: TokenBatch,
  perPosition: Record<string, Float32Array>,
): { batch: TokenBatch; extras: Record<string, Float32Array> } {
  const { batchSize: B, seqLen: T } = batch;
  for (let b = 0; b < B; b++) {
    const read = batch.readMask ? batch.readMask[b * T] !== 0 : perPosition["tokenWeights"] !== undefined && perPosition["tokenWeights"][b * T] !== 0;
    if (read) {
      throw new Error(
        `jax policy: row ${b} reads position 0, which a shifted-logits model cannot score (position t is predicted by row t − 1); ` +
          "a sequence must start with at least one prompt token",
      );
    }
  }
  const shift = <A extends Float32Array | Int32Array | Uint8Array>(src: A, make: (n: number) => A): A => {
    const out = make(src.length);
    for (let b = 0; b < B; b++) out.set(src.subarray(b * T + 1, (b + 1) * T), b * T);
    return out;
  };
  const extras: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(perPosition)) extras[k] = shift(v, (n) => new Float32Array(n));
  return {
    batch: {
      ...batch,
      targets: shift(batch.targets, (n) => new Int32Array(n)),
      ...(batch.readMask ? { readMask: shift(batch.readMask, (n) => new Uint8Array(n)) } : {}),
    },
    extras,
  };
}

/** Per-row log-probs [B*T] back in position space: position t gets row t − 1's value, position 0 gets 0. */
export function toPositionSpace(rowValues: Float32Array, batch: TokenBatch): Float32Array {
  const { batchSize: B, seqLen: T } = batch;
  const out = new Float32Array(B * T);
  for (let b = 0; b < B; b++) out.set(rowValues.subarray(b * T, (b + 1) * T - 1), b * T + 1);
  return out;
}
