/**
 * Batched masked-diffusion decoding: Dream `diffusion_generate` unmasking rules inside
 * Fast-dLLM semi-autoregressive blocks, with an optional approximate KV cache (prefix or
 * dual) refreshed once per block. Each sequence keeps its own block, step count, commit
 * count and RNG counter, so a batch never changes a sequence's result, and a finished
 * sequence stops taking part in forward passes.
 */
import { algConfidence, drawToken, greedyTokenProb, samplingProbs, type SamplingOptions } from "./sampling.js";
import { factorCommit, originCommit, sampleKByConfidence, scheduledCount, thresholdCommit, topKIndices } from "./commit-rules.js";
import { applyPadPenalty, padPenaltyAt } from "./pad-penalty.js";
import { cutResponse, fillAfterEnd, type SpecialIds } from "./eos-rules.js";
import { counterUniform, RNG_STREAM_ORDER, RNG_STREAM_TOKEN } from "./counter-rng.js";
import { InvalidDecodeParamsError, type DecodeParams } from "./decode-params.js";
import { logitRow, type Denoiser, type DenoiserSpec, type ForwardInput, type ForwardOutput } from "./denoiser.js";
import { cachedForwardInput, cacheFromPresent, type SeqCache } from "./kv-cache.js";

export interface DecodeInput {
  /** Prompt token ids (no MASK). */
  prompt: ArrayLike<number>;
  /** This sample's seed (see deriveSeed). */
  seed: number;
}

export interface DecodedSequence {
  /** Response ids up to and including the first EOS. */
  tokenIds: number[];
  /** Ended with EOS/PAD inside max_new_tokens. */
  finished: boolean;
  /** All max_new_tokens response positions as decoded (PAD after the end). */
  rawResponse: Int32Array;
  /** Forward passes this sequence took part in. */
  nfe: number;
  /** Commit steps taken. */
  steps: number;
  /** Seconds from the start of the batch until this sequence was complete. */
  decodeSeconds: number;
  /**
   * Only with params.trace: per response position (max_new_tokens of them, like rawResponse),
   * the 1-based step that committed its token (PAD written after an EOS counts as committed
   * at the step that wrote it).
   */
  commitSteps?: Int32Array;
}

/** What one forward pass looked like (for metrics and tests). */
export interface ForwardInfo {
  kind: "full" | "cached";
  batch: number;
  length: number;
  pastLength: number;
}

export interface DecodeOptions {
  /** Stops the decode between steps; the promise rejects with DecodeAbortedError. */
  signal?: AbortSignal;
  onForward?: (info: ForwardInfo) => void;
}

/**
 * Thrown when a decode was cancelled through its AbortSignal. Named "AbortError" like the
 * platform's, so callers (and the gRPC wrappers: CANCELLED) treat it as a cancellation.
 */
export class DecodeAbortedError extends Error {
  constructor(readonly reason?: unknown) {
    super(`decode aborted${reason instanceof Error ? `: ${reason.message}` : typeof reason === "string" ? `: ${reason}` : ""}`);
    this.name = "AbortError";
  }
}

interface SeqState {
  seed: number;
  ids: Int32Array;
  promptLen: number;
  len: number;
  blockStarts: number[];
  blockSteps: number[];
  block: number;
  stepsLeft: number;
  step: number;
  nfe: number;
  done: boolean;
  needRefresh: boolean;
  /** K/V of the last refresh (null before the first). */
  cache: SeqCache | null;
  endSeconds: number;
  /** params.trace: commit step per response position (0 = still masked); null when not tracing. */
  commitSteps: Int32Array | null;
}

/** Steps of each block: `steps` split as evenly as possible, at least one per block. */
export function stepsPerBlock(steps: number, blocks: number): number[] {
  return Array.from({ length: blocks }, (_, b) => Math.max(1, Math.floor((steps * (b + 1)) / blocks) - Math.floor((steps * b) / blocks)));
}

function blockEnd(s: SeqState, blockLength: number): number {
  return Math.min((s.blockStarts[s.block] as number) + blockLength, s.len);
}

/**
 * End (exclusive) of what the model sees: the whole canvas, or with `lookahead` L only the
 * prompt, the response so far, the current block and L masked positions after it — the
 * canvas a model trained on short responses knows, however long max_new_tokens is.
 */
function visibleEnd(s: SeqState, blockLength: number, lookahead: number): number {
  return lookahead > 0 ? Math.min(s.len, blockEnd(s, blockLength) + lookahead) : s.len;
}

function hasMask(ids: Int32Array, start: number, end: number, maskId: number): boolean {
  for (let i = start; i < end; i++) if (ids[i] === maskId) return true;
  return false;
}

function countMask(ids: Int32Array, start: number, end: number, maskId: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if (ids[i] === maskId) n++;
  return n;
}

/** Decodes a batch of prompts; results are in input order. */
export async function decodeBatch(
  model: Denoiser,
  inputs: readonly DecodeInput[],
  params: DecodeParams,
  opts: DecodeOptions = {},
): Promise<DecodedSequence[]> {
  return new BatchDecoder(model, inputs, params, opts).decode();
}

/** The proposal of one step for a sequence's masked positions in its current block. */
interface StepProposal {
  /** Masked positions of the current block. */
  cand: number[];
  /** Per candidate: the drawn token, its probability and the unmasking order's confidence. */
  tokens: number[];
  tokenProbs: number[];
  confs: number[];
}

/**
 * One decodeBatch call: the sequences' states, the step rule (propose tokens, choose which to
 * commit, move to the next block) and the forwards (full, or over the block with the cache).
 */
class BatchDecoder {
  private readonly spec: DenoiserSpec;
  private readonly special: SpecialIds;
  private readonly gen: number;
  private readonly nBlocks: number;
  private readonly t0 = performance.now();
  private readonly seqs: SeqState[];
  private readonly sampling: SamplingOptions;
  private readonly probs: Float64Array;
  /** Ids below this may be proposed (the tokenizer's size). */
  private readonly emitVocab: number;
  private readonly row: Float64Array;

  constructor(
    private readonly model: Denoiser,
    inputs: readonly DecodeInput[],
    private readonly params: DecodeParams,
    private readonly opts: DecodeOptions,
  ) {
    this.spec = model.spec;
    this.special = { maskId: this.spec.maskId, padId: this.spec.padId, eosId: this.spec.eosId };
    this.gen = params.max_new_tokens;
    this.nBlocks = Math.ceil(this.gen / params.block_length);
    this.seqs = inputs.map((inp) => this.initialState(inp, stepsPerBlock(params.steps, this.nBlocks)));
    this.sampling = { temperature: params.temperature, topP: params.top_p, topK: params.top_k };
    this.probs = new Float64Array(this.spec.vocabSize);
    this.emitVocab = Math.min(this.spec.tokenizerVocabSize ?? this.spec.vocabSize, this.spec.vocabSize);
    this.row = new Float64Array(this.spec.vocabSize);
  }

  private initialState(inp: DecodeInput, blockSteps: number[]): SeqState {
    const { spec, gen, params } = this;
    const promptLen = inp.prompt.length;
    const len = promptLen + gen;
    if (len > spec.maxSeqLen) {
      throw new InvalidDecodeParamsError(
        "max_new_tokens",
        `max_new_tokens ${gen} + prompt length ${promptLen} exceeds the model's max_seq_len ${spec.maxSeqLen}`,
      );
    }
    const ids = new Int32Array(len).fill(spec.maskId);
    for (let i = 0; i < promptLen; i++) ids[i] = inp.prompt[i] as number;
    return {
      seed: inp.seed,
      ids,
      promptLen,
      len,
      blockStarts: Array.from({ length: this.nBlocks }, (_, b) => promptLen + b * params.block_length),
      blockSteps,
      block: 0,
      stepsLeft: blockSteps[0] as number,
      step: 0,
      nfe: 0,
      done: false,
      needRefresh: true,
      cache: null,
      endSeconds: 0,
      commitSteps: params.trace === true ? new Int32Array(gen) : null,
    };
  }

  async decode(): Promise<DecodedSequence[]> {
    const { params, opts } = this;
    const V = this.spec.vocabSize;
    for (;;) {
      if (opts.signal?.aborted) throw new DecodeAbortedError(opts.signal.reason);
      const active = this.seqs.filter((s) => !s.done);
      if (active.length === 0) break;
      if (params.cache === "none") {
        const { out, T } = await this.fullForward(active, false);
        active.forEach((s, b) => this.commitStep(s, out.logits, (p) => (b * T + logitRow(this.spec, p)) * V));
        continue;
      }
      const refresh = params.cache_refresh === "step" ? active : active.filter((s) => s.needRefresh);
      if (params.cache_refresh === "step") {
        await this.fullForward(refresh, true);
      } else if (refresh.length > 0) {
        const { out, T } = await this.fullForward(refresh, true);
        refresh.forEach((s, b) => {
          s.needRefresh = false;
          this.commitStep(s, out.logits, (p) => (b * T + logitRow(this.spec, p)) * V);
        });
      }
      if (opts.signal?.aborted) throw new DecodeAbortedError(opts.signal.reason);
      const cachedGroup = params.cache_refresh === "step" ? active : active.filter((s) => !refresh.includes(s) && !s.done);
      if (cachedGroup.length > 0) {
        const { out, T, starts } = await this.cachedForward(cachedGroup);
        cachedGroup.forEach((s, b) => this.commitStep(s, out.logits, (p) => (b * T + (logitRow(this.spec, p) - (starts[b] as number))) * V));
      }
    }
    return this.seqs.map((s) => {
      const cut = cutResponse(s.ids, s.promptLen, s.len, this.special);
      return {
        tokenIds: cut.tokenIds,
        finished: cut.finished,
        rawResponse: s.ids.slice(s.promptLen),
        nfe: s.nfe,
        steps: s.step,
        decodeSeconds: s.endSeconds,
        ...(s.commitSteps ? { commitSteps: s.commitSteps } : {}),
      };
    });
  }

  /** One denoising step of `s` from its logits: propose, commit, then advance past finished blocks. */
  private commitStep(s: SeqState, logits: Float32Array, rowOffset: (pos: number) => number): void {
    const proposal = this.propose(s, logits, rowOffset);
    if (!proposal) return;
    const { cand, tokens } = proposal;
    for (const i of this.choose(s, proposal)) s.ids[cand[i] as number] = tokens[i] as number;
    s.step++;
    const be = blockEnd(s, this.params.block_length);
    if (this.params.eos_fill) {
      const lastChanged = fillAfterEnd(s.ids, s.promptLen, s.len, this.special);
      // The dual cache holds the suffix as it was at the refresh; PADs written there make it stale.
      if (lastChanged >= be && this.params.cache === "dual") s.needRefresh = true;
    }
    if (s.commitSteps) recordCommits(s, this.spec.maskId);
    this.advanceBlocks(s);
  }

  /** A token, its probability and its confidence for each masked position of the current block. */
  private propose(s: SeqState, logits: Float32Array, rowOffset: (pos: number) => number): StepProposal | null {
    const { spec, params, row, probs } = this;
    const V = spec.vocabSize;
    const bs = s.blockStarts[s.block] as number;
    const be = blockEnd(s, params.block_length);
    const cand: number[] = [];
    for (let p = bs; p < be; p++) if (s.ids[p] === spec.maskId) cand.push(p);
    if (cand.length === 0) return null;
    const progress = 1 - countMask(s.ids, s.promptLen, s.len, spec.maskId) / this.gen;
    const penalty = padPenaltyAt(params.pad_penalty, progress);
    const out: StepProposal = { cand, tokens: [], tokenProbs: [], confs: [] };
    // Greedy with no filters and a probability-only order: skip the full distribution.
    const greedy =
      params.temperature === 0 &&
      params.top_p >= 1 &&
      params.top_k === 0 &&
      (params.commit !== "schedule" || params.alg === "maskgit_plus" || params.alg === "origin");
    for (const p of cand) {
      const off = rowOffset(p);
      for (let v = 0; v < V; v++) row[v] = logits[off + v] as number;
      applyPadPenalty(row, 0, spec.padId, spec.eosId, penalty);
      // Committing MASK would be no progress (and an endless decode): it is never a candidate.
      row[spec.maskId] = -Infinity;
      // Nor is an id the tokenizer cannot decode (a vocabulary padded past the tokenizer).
      for (let v = this.emitVocab; v < V; v++) row[v] = -Infinity;
      if (greedy) {
        const g = greedyTokenProb(row, 0, V);
        if (Number.isNaN(g.prob)) throw nonFiniteLogits(p);
        out.tokens.push(g.token);
        out.tokenProbs.push(g.prob);
        out.confs.push(g.prob);
        continue;
      }
      samplingProbs(row, 0, V, this.sampling, probs);
      const tok = drawToken(probs, V, params.temperature, counterUniform(s.seed, s.step, p, RNG_STREAM_TOKEN));
      if (tok === spec.maskId || Number.isNaN(probs[tok])) throw nonFiniteLogits(p);
      out.tokens.push(tok);
      out.tokenProbs.push(probs[tok] as number);
      out.confs.push(algConfidence(params.alg, probs, V, tok));
    }
    return out;
  }

  /** Which proposals to commit (indices into the proposal): threshold, factor or the step schedule. */
  private choose(s: SeqState, { cand, tokenProbs, confs }: StepProposal): number[] {
    const { params } = this;
    if (params.commit === "threshold") return thresholdCommit(tokenProbs, params.threshold);
    if (params.commit === "factor") return factorCommit(tokenProbs, params.factor);
    const orderU = () => cand.map((p) => counterUniform(s.seed, s.step, p, RNG_STREAM_ORDER));
    let chosen: number[];
    if (params.alg === "origin") chosen = originCommit(orderU(), s.stepsLeft);
    else {
      const k = scheduledCount(cand.length, s.stepsLeft);
      chosen = params.alg_temp > 0 ? sampleKByConfidence(confs, k, params.alg_temp, orderU()) : topKIndices(confs, k);
    }
    s.stepsLeft--;
    return chosen;
  }

  /** Moves `s` past every block with no mask left; the last one finishes the sequence. */
  private advanceBlocks(s: SeqState): void {
    const { nBlocks, params, spec } = this;
    while (s.block < nBlocks && !hasMask(s.ids, s.blockStarts[s.block] as number, blockEnd(s, params.block_length), spec.maskId)) {
      s.block++;
      if (s.block < nBlocks) {
        s.stepsLeft = s.blockSteps[s.block] as number;
        s.needRefresh = true;
      }
    }
    if (s.block >= nBlocks) {
      s.done = true;
      s.endSeconds = (performance.now() - this.t0) / 1000;
    }
  }

  private run(input: ForwardInput, kind: ForwardInfo["kind"]): Promise<ForwardOutput> {
    this.opts.onForward?.({ kind, batch: input.batch, length: input.length, pastLength: input.pastLength });
    return this.model.forward(input);
  }

  private seen(s: SeqState): number {
    return visibleEnd(s, this.params.block_length, this.params.lookahead);
  }

  /** A forward over each sequence's visible canvas; with `wantPresent` it refreshes their caches. */
  private async fullForward(group: SeqState[], wantPresent: boolean): Promise<{ out: ForwardOutput; T: number }> {
    const { spec } = this;
    const B = group.length;
    const ends = group.map((s) => this.seen(s));
    const T = Math.max(...ends);
    const ids = new Int32Array(B * T).fill(spec.padId);
    const positions = new Int32Array(B * T);
    const attention = new Float32Array(B * T);
    group.forEach((s, b) => {
      const end = ends[b]!;
      ids.set(s.ids.subarray(0, end), b * T);
      for (let j = 0; j < end; j++) {
        positions[b * T + j] = j;
        attention[b * T + j] = 1;
      }
      s.nfe++;
    });
    const out = await this.run({ batch: B, length: T, pastLength: 0, ids, positions, attention, wantPresent }, "full");
    if (wantPresent) group.forEach((s, b) => (s.cache = cacheFromPresent(out, b, T, s.len, spec)));
    return { out, T };
  }

  /**
   * What a cached forward of `s` computes and reuses: the current block (prefix cache: through the
   * visible end) is computed; the cached K/V of the prefix (dual: and of the visible suffix) is reused.
   * A shifted-logits model reads the block's first distribution from the position before the
   * block, so that position is computed too (the window starts one early; it leaves the prefix).
   */
  private cacheLayout(s: SeqState): { ws: number; curEnd: number; pastRanges: Array<[number, number]> } {
    const { params } = this;
    const bs = s.blockStarts[s.block] as number;
    const ws = logitRow(this.spec, bs);
    const be = blockEnd(s, params.block_length);
    const end = this.seen(s);
    const curEnd = params.cache === "prefix" ? end : be;
    const pastRanges: Array<[number, number]> =
      params.cache === "prefix"
        ? [[0, ws]]
        : [
            [0, ws],
            [be, end],
          ];
    return { ws, curEnd, pastRanges };
  }

  /** A forward over each sequence's current block, attending to its cached K/V. */
  private async cachedForward(group: SeqState[]): Promise<{ out: ForwardOutput; T: number; starts: number[] }> {
    const windows = group.map((s) => {
      s.nfe++;
      const c = this.cacheLayout(s);
      return { ids: s.ids, cache: s.cache!, start: c.ws, end: c.curEnd, past: c.pastRanges };
    });
    const input = cachedForwardInput(windows, this.spec);
    const out = await this.run(input, "cached");
    return { out, T: input.length, starts: windows.map((w) => w.start) };
  }
}

/** Trace bookkeeping after a step: every response position newly unmasked was committed at s.step. */
function recordCommits(s: SeqState, maskId: number): void {
  const c = s.commitSteps!;
  for (let j = 0; j < c.length; j++) if (c[j] === 0 && s.ids[s.promptLen + j] !== maskId) c[j] = s.step;
}

/** A NaN distribution would commit MASK (or nothing) forever: the decode stops and says why instead. */
export function nonFiniteLogits(pos: number): Error {
  return new Error(`the model's logits for position ${pos} are not finite (NaN): cannot decode`);
}

