import { cloneNamedTensors, type NamedTensors } from "../optim/named-tensors.js";
import type { LogProbLoss } from "./grpo-loss-jax.js";
import type { GrpoPolicy } from "./grpo-update.js";
import { GrpoConfigError } from "./grpo-config.js";
import type { PolicyTokenBatch } from "./stacked-passes.js";

/**
 * Gradient accumulation over row chunks. The stacked GRPO loss is a plain sum over rows and
 * positions, with every normalisation (token-mean, sequence-mean, 1/#pairs, mask weights) already
 * folded into the per-position `factor` computed over the whole batch. So the loss of a batch is
 * the sum of the losses of its row chunks, and so is the gradient: running the policy on ≤ maxRows
 * rows at a time gives the same update with the peak memory of one chunk (the learner's jax-js
 * backend has a 4 GiB wasm heap; 8 prompts × G 8 × 2 passes × 128 tokens did not fit in one pass).
 *
 * Every chunk has exactly `min(maxRows, N)` rows; the last one is padded with copies of a real
 * row whose extras are 0 (factor 0: no loss, no gradient), so a jitted backend compiles one shape
 * per sequence length instead of one per remainder.
 */
export class ChunkedPolicy implements GrpoPolicy {
  constructor(
    private readonly inner: GrpoPolicy,
    readonly maxRows: number,
  ) {
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new GrpoConfigError(`maxRows must be a positive integer, got ${maxRows}`);
  }

  async tokenLogProbs(weights: NamedTensors, batch: PolicyTokenBatch): Promise<Float32Array> {
    if (batch.batchSize <= this.maxRows) return this.inner.tokenLogProbs(weights, batch);
    const out = new Float32Array(batch.batchSize * batch.seqLen);
    for (const c of rowChunks(batch.batchSize, this.maxRows)) {
      const lp = await this.inner.tokenLogProbs(weights, sliceRows(batch, c.start, c.rows, c.padded));
      out.set(lp.subarray(0, c.rows * batch.seqLen), c.start * batch.seqLen);
    }
    return out;
  }

  async lossAndGrad(
    weights: NamedTensors,
    batch: PolicyTokenBatch,
    loss: LogProbLoss,
    extras: Record<string, Float32Array>,
  ): Promise<{ loss: number; logProbs: Float32Array; grads: NamedTensors }> {
    if (batch.batchSize <= this.maxRows) return this.inner.lossAndGrad(weights, batch, loss, extras);
    const T = batch.seqLen;
    const logProbs = new Float32Array(batch.batchSize * T);
    let total = 0;
    let grads: NamedTensors | undefined;
    for (const c of rowChunks(batch.batchSize, this.maxRows)) {
      const ex: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(extras)) ex[k] = padRows(v.subarray(c.start * T, (c.start + c.rows) * T), c.padded * T);
      const r = await this.inner.lossAndGrad(weights, sliceRows(batch, c.start, c.rows, c.padded), loss, ex);
      total += r.loss;
      logProbs.set(r.logProbs.subarray(0, c.rows * T), c.start * T);
      if (!grads) grads = cloneNamedTensors(r.grads);
      else
        for (const [name, g] of Object.entries(r.grads)) {
          const acc = grads[name];
          if (!acc || acc.data.length !== g.data.length) throw new GrpoConfigError(`chunk gradients disagree on ${name}`);
          for (let i = 0; i < g.data.length; i++) acc.data[i]! += g.data[i]!;
        }
    }
    return { loss: total, logProbs, grads: grads! };
  }
}

interface RowChunk {
  start: number;
  /** Real rows in the chunk. */
  rows: number;
  /** Zero-weight padding rows appended. */
  padded: number;
}

/** Chunks of `size` rows covering n rows; the last one padded up to `size`. */
export function rowChunks(n: number, size: number): RowChunk[] {
  const out: RowChunk[] = [];
  for (let start = 0; start < n; start += size) {
    const rows = Math.min(size, n - start);
    out.push({ start, rows, padded: size - rows });
  }
  return out;
}

function padRows(a: Float32Array, extra: number): Float32Array {
  if (extra === 0) return a;
  const out = new Float32Array(a.length + extra);
  out.set(a);
  return out;
}

/** Rows [start, start+rows) of a batch, then `padded` copies of its first row (targets included; readMask 0). */
function sliceRows(b: PolicyTokenBatch, start: number, rows: number, padded: number): PolicyTokenBatch {
  const T = b.seqLen;
  const n = rows + padded;
  const take = <A extends Int32Array | Float32Array>(src: A, make: (len: number) => A): A => {
    const out = make(n * T);
    out.set(src.subarray(start * T, (start + rows) * T));
    for (let p = 0; p < padded; p++) out.set(src.subarray(start * T, (start + 1) * T), (rows + p) * T);
    return out;
  };
  const out: PolicyTokenBatch = {
    batchSize: n,
    seqLen: T,
    inputIds: take(b.inputIds, (l) => new Int32Array(l)),
    positionIds: take(b.positionIds, (l) => new Int32Array(l)),
    attentionMask: take(b.attentionMask, (l) => new Float32Array(l)),
    targets: take(b.targets, (l) => new Int32Array(l)),
  };
  if (b.readMask) {
    // Padding rows are read nowhere (their extras are 0).
    const m = new Uint8Array(n * T);
    m.set(b.readMask.subarray(start * T, (start + rows) * T));
    out.readMask = m;
  }
  return out;
}
