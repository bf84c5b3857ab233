// jax-runtime must be evaluated before @jax-js/jax (it installs the Node polyfills + Worker shim).
import { jit, nn, numpy as np, valueAndGrad } from "./jax-runtime.js";
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
 * diffusion, the clean token at a masked position (logits are not shifted).
 */
export interface TokenBatch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  positionIds: Int32Array;
  /** 1 = real key, 0 = padding that no position may attend to. */
  attentionMask: Float32Array;
  targets: Int32Array;
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

  private constructor(onnx: ONNXModel, initial: WeightTensors, vocabSize: number) {
    this.onnx = onnx;
    this.initial = initial;
    this.weightNames = Object.keys(initial);
    this.vocabSize = vocabSize;
  }

  /**
   * From the bytes of the rollout's model.onnx: every float initializer of at least 2 elements
   * whose name is not `const.*` is a trainable weight.
   */
  static fromModelBytes(bytes: Uint8Array, opts: { nLayers: number; vocabSize: number; pastInputNames?: string[] }): JaxPolicy {
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
    return new JaxPolicy(onnx, initial, opts.vocabSize);
  }

  /** From a directory validated by loadModel (uses the manifest's layer count, vocab and past names). */
  static fromLoadedModel(loaded: LoadedModel): JaxPolicy {
    const m = loaded.manifest;
    if (m.shifted_logits) throw new Error("jax policy: shifted-logits models are not supported by the learner yet");
    const past: string[] = [];
    for (let i = 0; i < m.n_layers; i++) {
      if (m.inputs.past_key) past.push(layerName(m.inputs.past_key, i));
      if (m.inputs.past_value) past.push(layerName(m.inputs.past_value, i));
    }
    return JaxPolicy.fromModelBytes(loaded.modelBytes, { nLayers: m.n_layers, vocabSize: m.vocab_size, pastInputNames: past });
  }

  /** A copy of the weights stored in the model file. */
  initialWeights(): WeightTensors {
    const out: WeightTensors = {};
    for (const [k, v] of Object.entries(this.initial)) out[k] = { shape: [...v.shape], data: Float32Array.from(v.data) };
    return out;
  }

  /** Logits [B*T*V] (forward only). */
  async logits(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
    const fn = this.cached("logits", () =>
      jit((params: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray) => this.forward(params, ids, pos, mask)),
    ) as (p: Params, ids: JaxArray, pos: JaxArray, mask: JaxArray) => JaxArray;
    const [ids, pos, mask] = this.batchArrays(batch);
    return (await fn(this.params(weights), ids, pos, mask).data()) as Float32Array;
  }

  /** log p(targets[b,t]) at every position [B*T] (forward only). */
  async tokenLogProbs(weights: WeightTensors, batch: TokenBatch): Promise<Float32Array> {
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
    for (const f of this.jitted.values()) (f as { dispose?: () => void }).dispose?.();
    this.jitted.clear();
    this.onnx.dispose();
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
