// Warm-up of a job's compiled batch shapes (issue 17): jax-js jit-compiles the update's kernels
// once per batch shape (rows × bucketed sequence length), ≈ 3 s each on the fast path. Without a
// warm-up every new bucket's first TrainStep pays that inside the job's first steps; with it, the
// job's trainer compiles every shape its recipe can produce right after StartJob, in the
// background, on dummy batches and on copies of the weights and optimizer state.
import { InvalidArgumentError } from "@rlmesh/shared";
import type { ModelManifest } from "@rlmesh/shared/model/index";
import type { GrpoBatch } from "../grpo/grpo-batch.js";
import { bucketSeqLen, DEFAULT_SEQ_BUCKET } from "./batch-bucket.js";

/**
 * What a job's TrainSteps look like, as far as their compiled shapes go: the job's own shape when
 * its StartJob carries one (train_shape, the api sends it), else the learner's configuration
 * (defaults: the demo's job), with the bounds (maxSeconds, maxHeapMiB) from the configuration.
 */
export interface WarmupRecipe {
  /** Samples per TrainStep: prompts_per_step × group_size. */
  rows: number;
  /** Shortest and longest prompt in tokens. */
  promptTokens: readonly [number, number];
  /** Longest response in tokens (the job's max_new_tokens). */
  responseTokens: number;
  /** No new shape is started after this many seconds (the warm-up is bounded). */
  maxSeconds: number;
  /**
   * No shape is started that would take jax-js's wasm heap past this many MiB (see
   * ShapeHeapLedger). @defaultValue DEFAULT_WARMUP_MAX_HEAP_MIB
   */
  maxHeapMiB?: number;
}

/**
 * The wasm heap (MiB) past which the warm-up starts no shape: a quarter of jax-js's 4 GiB. The
 * heap never shrinks and a shape's buffers serve only that shape, so what the warm-up takes for
 * shapes the job never uses (a batch is seldom as long as the longest shape; without a
 * train_shape in its StartJob the rows are a guess too) is lost to the job's own shapes; the
 * job keeps at least the other 3 GiB. Measured on the shipped model: 32 rows × 64 tokens take
 * 589 MiB, the demo recipe's six shapes 4027 MiB (README, "Warm-up").
 */
export const DEFAULT_WARMUP_MAX_HEAP_MIB = 1024;

/**
 * The demo's job (`rlmesh demo`): 4 prompts × G 8, the toy task suite's prompts (19–45 tokens
 * with the shipped tokenizer, datasets/toy/train.jsonl), the api's default max_new_tokens 64.
 */
export const DEFAULT_WARMUP_RECIPE: Readonly<WarmupRecipe> = Object.freeze({
  rows: 32,
  promptTokens: Object.freeze([19, 45] as const),
  responseTokens: 64,
  maxSeconds: 120,
});

/** Most rows a train_shape may name (the api's prompts_per_step × group_size bounds are far below). */
export const MAX_TRAIN_ROWS = 65_536;

/** The part of a recipe a job's StartJob can give (learner.proto TrainShape). */
export type JobTrainShape = Pick<WarmupRecipe, "rows" | "promptTokens" | "responseTokens">;

/**
 * StartJob's train_shape as a JobTrainShape: null when unset (or rows 0: the configured recipe
 * serves); a value that cannot be a job's shape is INVALID_ARGUMENT naming the field.
 */
export function checkTrainShape(raw: { rows?: number; promptTokensMin?: number; promptTokensMax?: number; responseTokens?: number } | null | undefined): JobTrainShape | null {
  if (!raw || !raw.rows) return null;
  const [rows, lo, hi, resp] = [raw.rows, raw.promptTokensMin ?? 0, raw.promptTokensMax ?? 0, raw.responseTokens ?? 0];
  if (rows > MAX_TRAIN_ROWS) throw new InvalidArgumentError("train_shape.rows", `must be at most ${MAX_TRAIN_ROWS}, got ${rows}`);
  if (lo < 1) throw new InvalidArgumentError("train_shape.prompt_tokens_min", `must be >= 1 when train_shape is given, got ${lo}`);
  if (hi < lo) throw new InvalidArgumentError("train_shape.prompt_tokens_max", `must be >= prompt_tokens_min (${lo}), got ${hi}`);
  if (resp < 1) throw new InvalidArgumentError("train_shape.response_tokens", `must be >= 1 when train_shape is given, got ${resp}`);
  return { rows, promptTokens: [lo, hi], responseTokens: resp };
}


/** One batch shape the update compiles: GRPO batch rows × padded sequence length. */
export interface WarmupShape {
  rows: number;
  seqLen: number;
}

/** What one shape's warm-up did. */
export interface WarmedShape extends WarmupShape {
  /** compiled: ran now; already: a TrainStep or an earlier warm-up had compiled it; skipped: not run (time bound, heap budget or stop). */
  outcome: "compiled" | "already" | "skipped";
  seconds: number;
}

export interface WarmupReport {
  shapes: WarmedShape[];
  /** Wall seconds from the warm-up's start to its end (TrainSteps that ran in between included). */
  seconds: number;
  /** Seconds spent compiling and running the shapes themselves. */
  warmSeconds: number;
  /** jax-js's wasm heap in bytes at the end (absent when it is not measured). */
  wasmHeapBytes?: number;
}

/** A warm-up setting that cannot be used (the message names it). */
export class WarmupConfigError extends Error {
  override name = "WarmupConfigError";
}

/** "19-45" or "45" (both ends the same) as a [min, max] token range. */
export function parseTokenRange(field: string, raw: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(raw);
  if (!m) throw new WarmupConfigError(`${field} must be a token count or a range MIN-MAX (e.g. 19-45), got ${JSON.stringify(raw)}`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi < lo) throw new WarmupConfigError(`${field} must satisfy 1 <= MIN <= MAX, got ${JSON.stringify(raw)}`);
  return [lo, hi];
}

export function checkWarmupRecipe(r: WarmupRecipe): WarmupRecipe {
  const int = (field: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new WarmupConfigError(`warm-up ${field} must be an integer >= ${min}, got ${v}`);
  };
  int("rows", r.rows, 1);
  int("promptTokens[0]", r.promptTokens[0], 1);
  int("promptTokens[1]", r.promptTokens[1], r.promptTokens[0]);
  int("responseTokens", r.responseTokens, 1);
  if (!(r.maxSeconds > 0)) throw new WarmupConfigError(`warm-up maxSeconds must be > 0, got ${r.maxSeconds}`);
  if (r.maxHeapMiB !== undefined && !(r.maxHeapMiB >= 0 && r.maxHeapMiB <= 4096)) {
    throw new WarmupConfigError(`warm-up maxHeapMiB must be in [0, 4096] (jax-js's wasm heap is at most 4 GiB), got ${r.maxHeapMiB}`);
  }
  return r;
}

/**
 * The padded sequence lengths a batch of this recipe can have (padBatchToBucket's targets for
 * every length from the shortest prompt + 1 response token to the longest prompt + the longest
 * response, capped at the model's max_seq_len), from the middle of that range outwards (ties:
 * the longer first). The warm-up may be cut short (the job's first TrainStep, the time bound), so
 * the likely lengths go first: a batch is as long as its longest row, which seldom has the
 * shortest prompt and an almost empty response, nor (unless responses run to max_new_tokens) the
 * longest of both. In a short local job (`bench rl`, toy suite, shipped model) the first steps'
 * batches fell in the middle buckets (README, "Warm-up").
 */
export function warmupShapes(recipe: WarmupRecipe, maxSeqLen: number, bucket = DEFAULT_SEQ_BUCKET): WarmupShape[] {
  checkWarmupRecipe(recipe);
  const shortest = Math.min(maxSeqLen, recipe.promptTokens[0] + 1);
  const longest = Math.min(maxSeqLen, recipe.promptTokens[1] + recipe.responseTokens);
  const lens = new Set<number>();
  for (let t = shortest; t <= longest; t++) lens.add(bucketSeqLen(t, maxSeqLen, bucket));
  const centre = (shortest + longest) / 2;
  return [...lens].sort((a, b) => Math.abs(a - centre) - Math.abs(b - centre) || b - a).map((seqLen) => ({ rows: recipe.rows, seqLen }));
}

/** The trainer's key of a compiled shape (with `stale`: the old-log-prob forward of a previous version's samples too). */
export function shapeKey(rows: number, seqLen: number, stale = false): string {
  return `${rows}x${seqLen}${stale ? "+old" : ""}`;
}

/**
 * A dummy GRPO batch of one shape: every row is `seqLen` real tokens (a prompt and then the
 * longest response that fits, so the loss reads as many positions as a real batch of this length
 * can), advantages ±1 so no row is dropped. Token ids cycle over the ordinary vocabulary (no
 * MASK, PAD or EOS).
 */
export function warmupBatch(shape: WarmupShape, recipe: WarmupRecipe, m: Pick<ModelManifest, "vocab_size" | "mask_id" | "pad_id" | "eos_id">): GrpoBatch {
  const { rows: B, seqLen: T } = shape;
  const special = new Set([m.mask_id, m.pad_id, m.eos_id]);
  const ordinary: number[] = [];
  for (let id = 0; id < m.vocab_size && ordinary.length < 257; id++) if (!special.has(id)) ordinary.push(id);
  if (ordinary.length === 0) throw new Error(`warm-up: the model's vocabulary (${m.vocab_size}) has no ordinary token`);
  const response = Math.max(1, Math.min(recipe.responseTokens, T - 1));
  const prompt = T - response;
  const tokens = new Int32Array(B * T);
  const attentionMask = new Uint8Array(B * T).fill(1);
  const responseMask = new Uint8Array(B * T);
  const advantages = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < T; j++) tokens[b * T + j] = ordinary[(b * 31 + j * 7) % ordinary.length]!;
    responseMask.fill(1, b * T + prompt, (b + 1) * T);
    advantages[b] = b % 2 ? -1 : 1;
  }
  return { batchSize: B, seqLen: T, tokens, attentionMask, responseMask, advantages };
}

/**
 * What batch shapes cost in jax-js's wasm heap, measured in this process (the heap is one per
 * process and outlives trainers). A shape's first update grows the heap by its buffers; jax-js's
 * allocator gives them back only to requests of the same sizes, so a shape that ran once (by a
 * TrainStep or a warm-up, of any job on the same model) costs no new heap again, and any other
 * shape costs about what it cost the first time.
 */
export class ShapeHeapLedger {
  /** key (model tag + shapeKey) → heap growth in bytes of that shape's first run. */
  private readonly runs = new Map<string, { rows: number; seqLen: number; bytes: number }>();

  /** Notes a shape's run and the heap growth it caused (the first run of a key is kept). */
  record(model: string, key: string, rows: number, seqLen: number, bytes: number): void {
    const k = `${model}|${key}`;
    if (!this.runs.has(k)) this.runs.set(k, { rows, seqLen, bytes: Math.max(0, bytes) });
  }

  /**
   * The heap growth to expect from `shape`'s update: 0 when it ran in this process; else the
   * largest estimate from this model's measured shapes, each scaled by rows and by seqLen (squared
   * for a longer sequence, attention's T×T buffers; linear for a shorter one, which overestimates:
   * measured 32 rows × 32/48/80/112 tokens grew 242/411/757/1152 MiB against 589 at 64); null when
   * no shape of this model was measured yet.
   */
  estimate(model: string, shape: WarmupShape): number | null {
    if (this.runs.has(`${model}|${shapeKey(shape.rows, shape.seqLen)}`)) return 0;
    let best: number | null = null;
    for (const [k, r] of this.runs) {
      if (!k.startsWith(`${model}|`) || r.bytes === 0) continue;
      const t = shape.seqLen / r.seqLen;
      const e = r.bytes * (shape.rows / r.rows) * (t > 1 ? t * t : t);
      best = Math.max(best ?? 0, e);
    }
    return best;
  }

  /** The shapes that ran in this process and their first run's heap growth, largest first ("32x64 589 MiB"). */
  describe(): string {
    const runs = [...this.runs].sort((a, b) => b[1].bytes - a[1].bytes);
    return runs.map(([k, r]) => `${k.slice(k.lastIndexOf("|") + 1)} ${Math.round(r.bytes / 2 ** 20)} MiB`).join(", ");
  }
}

/** The process's ledger (jax-js has one wasm heap per process). */
export const shapeHeapLedger = new ShapeHeapLedger();

/**
 * Why the warm-up must not start `shape` with `heapBytes` in use (null: the heap is not measured)
 * under a budget of `maxHeapMiB`, or "" when it may. `estimate` is ShapeHeapLedger's.
 */
export function heapBudgetRefusal(heapBytes: number | null, estimate: number | null, maxHeapMiB: number, shapesRun: number): string {
  const mib = (b: number) => Math.round(b / 2 ** 20);
  if (heapBytes === null) return shapesRun > 0 ? "the wasm heap is not measured: one shape at most" : "";
  if (estimate === 0) return "";
  const budget = maxHeapMiB * 2 ** 20;
  if (estimate === null) return heapBytes < budget ? "" : `wasm heap ${mib(heapBytes)} MiB >= the ${maxHeapMiB} MiB warm-up budget`;
  if (heapBytes + estimate <= budget) return "";
  return `wasm heap ${mib(heapBytes)} MiB + ~${mib(estimate)} MiB for this shape > the ${maxHeapMiB} MiB warm-up budget`;
}

/**
 * jax-js's "Allocation exceeds the 4 GiB memory32 limit" (a RangeError) as an error that says what
 * holds the heap and what to do; any other error as it is.
 */
export function explainHeapExhausted(err: unknown, shape: string, heapBytes: number | null, ledger: ShapeHeapLedger = shapeHeapLedger): unknown {
  if (!(err instanceof RangeError) || !/memory32 limit/.test(err.message)) return err;
  const held = heapBytes !== null ? ` holds ${Math.round(heapBytes / 2 ** 20)} MiB and` : "";
  const shapes = ledger.describe();
  return new Error(
    `${err.message} (batch shape ${shape}): jax-js's wasm heap${held} never shrinks, and every batch shape this learner process ran keeps its buffers` +
      `${shapes ? ` (${shapes})` : ""}; restart the learner (the job resumes from its checkpoint), and lower RLMESH_LEARNER_MAX_TOKENS_PER_PASS or RLMESH_LEARNER_WARMUP_MAX_HEAP_MB`,
    { cause: err },
  );
}
