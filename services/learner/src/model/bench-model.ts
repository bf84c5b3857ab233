import { cpus } from "node:os";

import { loadModel } from "@rlmesh/shared/model/index";

import { JaxPolicy } from "./jax-policy.js";
import type { TokenBatch } from "./jax-policy.js";
import { initJax } from "./jax-runtime.js";
import { jaxThreadCount } from "./worker-shim.js";

/** Shape of the benchmark batch: a toy-suite-sized sequence (prompt ≤ 45 + 64 response positions). */
export const BENCH_BATCH = 16;
export const BENCH_SEQ_LEN = 112;
export const BENCH_WARMUP = 2;
export const BENCH_ITERS = 5;

export interface ModelBenchResult {
  model_dir: string;
  params: number;
  batch: number;
  seq_len: number;
  ort_threads: number;
  jax_threads: number;
  ort_forward_ms: number;
  ort_forward_tokens_per_s: number;
  jax_forward_backward_ms: number;
  jax_forward_backward_tokens_per_s: number;
  cpu: string;
}

export const BENCH_MODEL_USAGE = `usage: rlmesh bench model [--model DIR] [--batch B] [--seq T] [--iters N] [--json]
  onnxruntime forward tokens/s and jax-js forward+backward tokens/s of a model directory.`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function benchModel(opts: { modelDir: string; batch: number; seqLen: number; iters: number }): Promise<ModelBenchResult> {
  const loaded = await loadModel(opts.modelDir);
  const m = loaded.manifest;
  const B = opts.batch;
  const T = Math.min(opts.seqLen, m.max_seq_len);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % m.vocab_size);
  const pos = Int32Array.from({ length: B * T }, (_, i) => i % T);
  const mask = new Float32Array(B * T).fill(1);

  const ort = await import("onnxruntime-node");
  const ortThreads = Math.max(1, Math.min(cpus().length, 4));
  const session = await ort.InferenceSession.create(loaded.modelBytes, { intraOpNumThreads: ortThreads, interOpNumThreads: 1 });
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    [m.inputs.input_ids]: new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (v) => BigInt(v)),
      [B, T],
    ),
    [m.inputs.position_ids]: new ort.Tensor(
      "int64",
      BigInt64Array.from(pos, (v) => BigInt(v)),
      [B, T],
    ),
    [m.inputs.attention_mask]: new ort.Tensor("float32", mask, [B, T]),
  };
  const empty = new ort.Tensor("float32", new Float32Array(0), [B, m.n_kv_heads ?? m.n_heads, 0, m.head_dim]);
  for (const name of session.inputNames) if (!(name in feeds)) feeds[name] = empty;
  const ortTimes: number[] = [];
  for (let i = 0; i < BENCH_WARMUP + opts.iters; i++) {
    const t = performance.now();
    await session.run(feeds, [m.outputs.logits]);
    if (i >= BENCH_WARMUP) ortTimes.push(performance.now() - t);
  }
  await session.release();

  await initJax();
  const policy = JaxPolicy.fromLoadedModel(loaded);
  const weights = policy.initialWeights();
  const batch: TokenBatch = { batchSize: B, seqLen: T, inputIds: ids, positionIds: pos, attentionMask: mask, targets: ids };
  const tw = new Float32Array(B * T).fill(1 / (B * T));
  const jaxTimes: number[] = [];
  for (let i = 0; i < BENCH_WARMUP + opts.iters; i++) {
    const t = performance.now();
    await policy.weightedNllGrad(weights, batch, tw);
    if (i >= BENCH_WARMUP) jaxTimes.push(performance.now() - t);
  }
  policy.dispose();
  const params = Object.values(weights).reduce((n, w) => n + w.data.length, 0);
  const ortMs = median(ortTimes);
  const jaxMs = median(jaxTimes);
  return {
    model_dir: opts.modelDir,
    params,
    batch: B,
    seq_len: T,
    ort_threads: ortThreads,
    jax_threads: jaxThreadCount(),
    ort_forward_ms: Number(ortMs.toFixed(2)),
    ort_forward_tokens_per_s: Math.round((B * T * 1000) / ortMs),
    jax_forward_backward_ms: Number(jaxMs.toFixed(1)),
    jax_forward_backward_tokens_per_s: Math.round((B * T * 1000) / jaxMs),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}`,
  };
}

/** Entry point of `rlmesh bench model`. Returns the process exit code. */
export async function benchModelCommand(argv: readonly string[]): Promise<number> {
  const opts = { modelDir: "models/tiny-coder", batch: BENCH_BATCH, seqLen: BENCH_SEQ_LEN, iters: BENCH_ITERS };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const int = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`bench model: ${flag} needs a positive integer\n${BENCH_MODEL_USAGE}`);
      return n;
    };
    try {
      if (flag === "--json") json = true;
      else if (flag === "--model") {
        const v = argv[++i];
        if (!v) throw new Error(`bench model: --model needs a directory\n${BENCH_MODEL_USAGE}`);
        opts.modelDir = v;
      } else if (flag === "--batch") opts.batch = int();
      else if (flag === "--seq") opts.seqLen = int();
      else if (flag === "--iters") opts.iters = int();
      else throw new Error(`bench model: unknown flag ${flag}\n${BENCH_MODEL_USAGE}`);
    } catch (err) {
      console.error((err as Error).message);
      return 2;
    }
  }
  const r = await benchModel(opts);
  if (json) console.log(JSON.stringify(r));
  else {
    console.log(`model ${r.model_dir}: ${(r.params / 1e6).toFixed(2)} M params, batch ${r.batch} × ${r.seq_len} tokens, ${r.cpu}`);
    console.log(
      `  onnxruntime forward:        ${r.ort_forward_ms.toFixed(1)} ms  ${r.ort_forward_tokens_per_s} tokens/s (${r.ort_threads} threads)`,
    );
    console.log(
      `  jax-js forward + backward:  ${r.jax_forward_backward_ms.toFixed(0)} ms  ${r.jax_forward_backward_tokens_per_s} tokens/s (${r.jax_threads} threads)`,
    );
  }
  return 0;
}
