/**
 * Infill decoding: fill the middle of canvas = prefix + middle + suffix, in a batch whose rows
 * have different prefix, suffix and middle lengths (padded keys get attention 0).
 *
 * Variable length follows DreamOn's public generation code (`batch_generate_with_expand_as_token`):
 * one token per step, the most confident masked middle position (entropy order by default);
 * after the commit
 *  - an EOS (the delete token) turns every mask to its right in the middle into EOS
 *    (`pad_eos_to_right`), then every EOS in the middle is deleted: the suffix shifts left
 *    (DreamOn appends a reserve mask past the attended window; here the window is the canvas);
 *  - an `<|expand|>` is replaced in place by two masks; the expand logit is blocked once the
 *    middle has `maxLength` tokens or `maxLength` expansions were spent (DreamOn's budget);
 * until no mask is left in the middle. Positions are 0..len-1 over the current canvas, as
 * DreamOn's `cumsum(attention) - 1` over its window.
 *
 * Fixed length (ordinary models): exactly `initialLength` masks, never an expand; Fast-dLLM
 * blocks over the middle with the threshold / factor / schedule commit rules; with `eos_fill`
 * an EOS turns the masks to its right into EOS. EOS/PAD inside the middle are dropped from the
 * returned middle (DreamOn's fixed-length baseline decodes them with skip_special_tokens).
 */
import { algConfidence, drawToken, samplingProbs, softmaxNorm, softmaxProb, type SamplingOptions } from "./sampling.js";
import { factorCommit, sampleKByConfidence, scheduledCount, thresholdCommit, topKIndices } from "./commit-rules.js";
import { counterUniform, RNG_STREAM_ORDER, RNG_STREAM_TOKEN } from "./counter-rng.js";
import { InvalidDecodeParamsError } from "./decode-params.js";
import { DecodeAbortedError, nonFiniteLogits, stepsPerBlock, type DecodeOptions } from "./diffusion-decoder.js";
import { logitRow, type Denoiser, type DenoiserSpec, type ForwardOutput } from "./denoiser.js";
import { cachedForwardInput, cacheFromPresent, fullForwardInput, type SeqCache } from "./kv-cache.js";
import type { InfillParams } from "./infill-params.js";
import { decodeWithLengthSearch, type LengthCandidate } from "./infill-length-search.js";

export interface InfillInput {
  prefix: ArrayLike<number>;
  suffix: ArrayLike<number>;
  /** Masks the middle starts with (fixed length: exactly this many). */
  initialLength: number;
  /** Variable length: the middle never grows past this. */
  maxLength: number;
  seed: number;
}

export type InfillEventKind = "expand" | "delete" | "eos_fill";

/** At `step` (1-based), `kind` happened at middle position `position` (index at that moment). */
export interface InfillEditEvent {
  step: number;
  kind: InfillEventKind;
  position: number;
}

export interface InfilledSequence {
  /** The final middle (no MASK, EOS or PAD). */
  middleIds: number[];
  /** Forward passes this row took part in. */
  nfe: number;
  /** Commit steps taken. */
  steps: number;
  /** `<|expand|>` commits (each turned one mask into two), counted with or without trace. */
  expands: number;
  /** Middle positions deleted (EOS/delete/PAD tokens removed, variable length), with or without trace. */
  deletes: number;
  /**
   * Sum of ln p over the final middle's tokens, p the probability each had when it was committed
   * (the decode's own confidence in what it wrote; 0 for an empty middle).
   */
  logProb: number;
  /** Only with params.trace: per middle position, the 1-based step that committed it. */
  commitSteps?: number[];
  /** Only with params.trace: the edits in order. */
  events?: InfillEditEvent[];
  /** Seconds from the start of the batch until this row was complete. */
  decodeSeconds: number;
  /** Only with params.length_search: every candidate middle, best-scored first (the one above is the first). */
  candidates?: LengthCandidate[];
}

interface Row {
  seed: number;
  /** prefix + middle + suffix. */
  ids: number[];
  pre: number;
  /** Current middle length. */
  mid: number;
  maxLength: number;
  /** Expansions left (DreamOn's expand_budget). */
  budget: number;
  /** Per middle position, the step that committed it (0 = still a mask). */
  commit: number[];
  /** Per middle position, ln p of its token when committed (0 while a mask). */
  logp: number[];
  events: InfillEditEvent[];
  expands: number;
  deletes: number;
  step: number;
  nfe: number;
  done: boolean;
  /** Fixed mode: current block and the schedule's steps left in it. */
  block: number;
  blockSteps: number[];
  stepsLeft: number;
  /** A bound on steps (never reached by a correct decode; stops a runaway one). */
  maxSteps: number;
  endSeconds: number;
  /** Fixed mode with a cache: K/V of the last refresh, the block it was taken for, and whether an
   * EOS fill has since changed a position the dual cache reuses. */
  cache: SeqCache | null;
  cacheBlock: number;
  stale: boolean;
}

/**
 * Decodes a batch of infill items; results are in input order. Variable length with
 * `length_search` > 0 adds the length search (infill-length-search.ts) after the decode.
 */
export async function decodeInfillBatch(
  model: Denoiser,
  inputs: readonly InfillInput[],
  params: InfillParams,
  opts: DecodeOptions = {},
): Promise<InfilledSequence[]> {
  if (params.variable && params.length_search > 0) return decodeWithLengthSearch(decodeInfillBatch, model, inputs, params, opts);
  return new InfillDecoder(model, inputs, params, opts).decode();
}

class InfillDecoder {
  private readonly spec: DenoiserSpec;
  private readonly rows: Row[];
  private readonly sampling: SamplingOptions;
  private readonly probs: Float64Array;
  private readonly row: Float64Array;
  private readonly t0 = performance.now();

  constructor(
    private readonly model: Denoiser,
    inputs: readonly InfillInput[],
    private readonly params: InfillParams,
    private readonly opts: DecodeOptions,
  ) {
    this.spec = model.spec;
    const { spec } = this;
    if (params.variable && params.expand_id < 0) {
      throw new InvalidDecodeParamsError("variable_length", "variable_length needs a model with an expand token");
    }
    for (const id of [params.expand_id, params.delete_id]) {
      if (id >= spec.vocabSize || id === spec.maskId) throw new Error(`infill token id ${id} is outside the vocabulary or is MASK`);
    }
    this.rows = inputs.map((inp, i) => this.initialRow(inp, i));
    this.sampling = { temperature: params.temperature, topP: params.top_p, topK: params.top_k };
    this.probs = new Float64Array(spec.vocabSize);
    this.row = new Float64Array(spec.vocabSize);
  }

  private initialRow(inp: InfillInput, i: number): Row {
    const { spec, params } = this;
    const { initialLength: n, maxLength } = inp;
    if (!Number.isInteger(n) || n < 1) throw new InvalidDecodeParamsError(`items[${i}].initial_length`, `items[${i}].initial_length must be >= 1`);
    if (params.variable && !(Number.isInteger(maxLength) && maxLength >= n)) {
      throw new InvalidDecodeParamsError(`items[${i}].max_length`, `items[${i}].max_length must be >= initial_length (${n})`);
    }
    const longest = inp.prefix.length + (params.variable ? maxLength : n) + inp.suffix.length;
    if (longest > spec.maxSeqLen) {
      throw new InvalidDecodeParamsError(
        params.variable ? `items[${i}].max_length` : `items[${i}].initial_length`,
        `prefix (${inp.prefix.length}) + middle (${params.variable ? maxLength : n}) + suffix (${inp.suffix.length}) tokens exceed the model's max_seq_len ${spec.maxSeqLen}`,
      );
    }
    const ids = [...Array.from(inp.prefix), ...new Array<number>(n).fill(spec.maskId), ...Array.from(inp.suffix)];
    const nBlocks = params.variable ? 1 : Math.ceil(n / params.block_length);
    const steps = params.steps > 0 ? Math.min(params.steps, n) : n;
    const blockSteps = stepsPerBlock(steps, nBlocks);
    return {
      seed: inp.seed,
      ids,
      pre: inp.prefix.length,
      mid: n,
      maxLength: params.variable ? maxLength : n,
      budget: params.variable ? maxLength : 0,
      commit: new Array<number>(n).fill(0),
      logp: new Array<number>(n).fill(0),
      events: [],
      expands: 0,
      deletes: 0,
      step: 0,
      nfe: 0,
      done: false,
      block: 0,
      blockSteps,
      stepsLeft: blockSteps[0] as number,
      maxSteps: params.variable ? n + 2 * maxLength + 1 : n,
      endSeconds: 0,
      cache: null,
      cacheBlock: -1,
      stale: false,
    };
  }

  async decode(): Promise<InfilledSequence[]> {
    const { opts, params } = this;
    const cached = !params.variable && params.cache !== "none";
    for (;;) {
      if (opts.signal?.aborted) throw new DecodeAbortedError(opts.signal.reason);
      for (const r of this.rows) if (!r.done && (!this.hasMask(r) || r.step >= r.maxSteps)) this.finish(r);
      const active = this.rows.filter((r) => !r.done);
      if (active.length === 0) break;
      if (!cached) {
        await this.fullStep(active, false);
        continue;
      }
      // A row refreshes its cache with a full forward when its block starts (or before every
      // step with cache_refresh: step, or after an EOS fill changed what the dual cache reuses);
      // the others run their block (prefix: block to the end) against their cached K/V.
      for (const r of active) this.advanceBlock(r);
      const refresh = active.filter((r) => r.cache === null || r.cacheBlock !== r.block || r.stale || params.cache_refresh === "step");
      const reuse = active.filter((r) => !refresh.includes(r));
      if (refresh.length > 0) await this.fullStep(refresh, true);
      if (reuse.length > 0) await this.cachedStep(reuse);
    }
    return this.rows.map((r) => this.result(r));
  }

  private forward(input: Parameters<Denoiser["forward"]>[0]): Promise<ForwardOutput> {
    this.opts.onForward?.({ kind: input.pastLength > 0 ? "cached" : "full", batch: input.batch, length: input.length, pastLength: input.pastLength });
    return this.model.forward(input);
  }

  /** One step of each row of `group` from a forward over its whole canvas (`refresh`: keeping its K/V). */
  private async fullStep(group: Row[], refresh: boolean): Promise<void> {
    const { spec } = this;
    const V = spec.vocabSize;
    const input = fullForwardInput(
      group.map((r) => r.ids),
      spec,
      refresh,
    );
    const T = input.length;
    for (const r of group) r.nfe++;
    const out = await this.forward(input);
    group.forEach((r, b) => {
      if (refresh) {
        r.cache = cacheFromPresent(out, b, T, r.ids.length, spec);
        r.cacheBlock = r.block;
        r.stale = false;
      }
      this.step(r, out.logits, (p) => (b * T + logitRow(spec, p)) * V);
    });
  }

  /**
   * What a cached forward of row `r` computes: from the position whose logits row predicts the
   * block's first position (the one before it for a shifted-logits model) to the block's end
   * (dual) or the canvas's end (prefix); the cached K/V of every other position is reused.
   */
  private cacheLayout(r: Row): { ws: number; we: number; past: Array<[number, number]> } {
    const { spec, params } = this;
    const bs = r.pre + r.block * params.block_length;
    const be = r.pre + Math.min(r.mid, (r.block + 1) * params.block_length);
    const ws = logitRow(spec, bs);
    const len = r.ids.length;
    if (params.cache === "prefix") return { ws, we: len, past: [[0, ws]] };
    return { ws, we: be, past: [[0, ws], [be, len]] };
  }

  /** One step of each row of `group` from a forward over its window, attending to its cached K/V. */
  private async cachedStep(group: Row[]): Promise<void> {
    const { spec } = this;
    const V = spec.vocabSize;
    const windows = group.map((r) => {
      r.nfe++;
      const c = this.cacheLayout(r);
      return { ids: r.ids, cache: r.cache!, start: c.ws, end: c.we, past: c.past };
    });
    const input = cachedForwardInput(windows, spec);
    const out = await this.forward(input);
    group.forEach((r, b) => this.step(r, out.logits, (p) => (b * input.length + logitRow(spec, p) - windows[b]!.start) * V));
  }

  private hasMask(r: Row): boolean {
    for (let k = 0; k < r.mid; k++) if (r.ids[r.pre + k] === this.spec.maskId) return true;
    return false;
  }

  private finish(r: Row): void {
    r.done = true;
    r.endSeconds = (performance.now() - this.t0) / 1000;
  }

  /** Fixed mode: moves past finished blocks (semi-AR blocks over the middle); returns the current block's middle range. */
  private advanceBlock(r: Row): { lo: number; hi: number } {
    const { spec, params } = this;
    const nBlocks = r.blockSteps.length;
    for (;;) {
      const lo = r.block * params.block_length;
      const hi = Math.min(r.mid, lo + params.block_length);
      let any = false;
      for (let k = lo; k < hi; k++) if (r.ids[r.pre + k] === spec.maskId) any = true;
      if (any || r.block >= nBlocks - 1) return { lo, hi };
      r.block++;
      r.stepsLeft = r.blockSteps[r.block] as number;
    }
  }

  /** Middle positions (0-based in the middle) that may be committed this step. */
  private candidates(r: Row): number[] {
    const { spec, params } = this;
    const { lo, hi } = params.variable ? { lo: 0, hi: r.mid } : this.advanceBlock(r);
    const cand: number[] = [];
    for (let k = lo; k < hi; k++) if (r.ids[r.pre + k] === spec.maskId) cand.push(k);
    return cand;
  }

  /** One denoising step of row `r`: propose, commit, then apply the edit rules. */
  private step(r: Row, logits: Float32Array, rowOffset: (pos: number) => number): void {
    const { spec, params, row, probs } = this;
    const V = spec.vocabSize;
    const cand = this.candidates(r);
    if (cand.length === 0) return;
    const expandOpen = params.variable && r.mid < r.maxLength && r.budget > 0;
    // Greedy with no filters needs only the argmax and its probability, unless the order is by
    // the alg's confidence (variable length, or the schedule rule) and that is not the probability.
    const orderByProb = (!params.variable && params.commit !== "schedule") || params.alg === "maskgit_plus" || params.alg === "origin";
    const greedy = params.temperature === 0 && params.top_p >= 1 && params.top_k === 0 && orderByProb;
    const tokens: number[] = [];
    const tokenProbs: number[] = [];
    const confs: number[] = [];
    const cut = params.variable && params.eos_cut > 0;
    // Growth by the expand cut stops at a row's first delete: the model has said where the middle
    // ends, and growing again would only feed the next cut (expand/delete churn).
    const grow = params.variable && params.expand_cut > 0 && expandOpen && r.deletes === 0;
    let growAt = -1;
    let growP = params.expand_cut;
    for (const k of cand) {
      const p = r.pre + k;
      const off = rowOffset(p);
      for (let v = 0; v < V; v++) row[v] = logits[off + v] as number;
      // Ids past the tokenizer's vocabulary (an imported model's padded embedding rows) are never proposed.
      for (let v = Math.min(spec.tokenizerVocabSize ?? V, V); v < V; v++) row[v] = -Infinity;
      row[spec.maskId] = -Infinity;
      if (params.expand_id >= 0 && !expandOpen) row[params.expand_id] = -Infinity;
      // One softmax normalizer per position serves the length cuts and the greedy choice.
      const norm = cut || grow || greedy ? softmaxNorm(row, 0, V) : undefined;
      if (cut && softmaxProb(row, 0, norm!, spec.eosId) >= params.eos_cut) {
        // The leftmost sure EOS (candidates are in middle order) is this step's only commit.
        r.step++;
        this.commitVariable(r, k, spec.eosId);
        return;
      }
      if (grow) {
        const pe = softmaxProb(row, 0, norm!, params.expand_id);
        if (pe > growP || (growAt < 0 && pe >= growP)) {
          growP = pe;
          growAt = k;
        }
      }
      if (greedy) {
        const prob = 1 / norm!.total;
        if (Number.isNaN(prob)) throw nonFiniteLogits(p);
        tokens.push(norm!.argmax);
        tokenProbs.push(prob);
        confs.push(prob);
        continue;
      }
      samplingProbs(row, 0, V, this.sampling, probs);
      const tok = drawToken(probs, V, params.temperature, counterUniform(r.seed, r.step, p, RNG_STREAM_TOKEN));
      if (tok === spec.maskId || Number.isNaN(probs[tok])) throw nonFiniteLogits(p);
      tokens.push(tok);
      tokenProbs.push(probs[tok] as number);
      confs.push(algConfidence(params.alg, probs, V, tok));
    }
    if (growAt >= 0) {
      // No EOS cut applied: the surest expand is this step's only commit.
      r.step++;
      this.commitVariable(r, growAt, params.expand_id);
      return;
    }
    const chosen = this.choose(r, cand, tokenProbs, confs);
    r.step++;
    if (params.variable) {
      // Ordinary tokens first (they shift nothing), then at most one edit: the most confident.
      const edits = chosen.filter((i) => this.isEdit(tokens[i] as number));
      for (const i of chosen) if (!edits.includes(i)) this.commitVariable(r, cand[i] as number, tokens[i] as number, tokenProbs[i]);
      if (edits.length > 0) {
        const i = edits.reduce((a, b) => ((confs[b] as number) > (confs[a] as number) ? b : a));
        this.commitVariable(r, cand[i] as number, tokens[i] as number);
      }
      return;
    }
    for (const i of chosen) {
      const k = cand[i] as number;
      r.ids[r.pre + k] = tokens[i] as number;
      r.commit[k] = r.step;
      r.logp[k] = Math.log(tokenProbs[i] as number);
    }
    if (params.eos_fill) this.fillAfterFirstEnd(r);
  }

  /** Indices into the candidates: one (variable, DreamOn) or the fixed mode's commit rule. */
  private choose(r: Row, cand: number[], tokenProbs: number[], confs: number[]): number[] {
    const { params } = this;
    const orderU = () => cand.map((k) => counterUniform(r.seed, r.step, r.pre + k, RNG_STREAM_ORDER));
    if (params.variable) {
      const one = () => (params.alg_temp > 0 ? sampleKByConfidence(confs, 1, params.alg_temp, orderU()) : topKIndices(confs, 1));
      if (params.variable_threshold >= 1) return one();
      const sure = tokenProbs.flatMap((p, i) => (p >= params.variable_threshold ? [i] : []));
      return sure.length > 0 ? sure : one();
    }
    if (params.commit === "threshold") return thresholdCommit(tokenProbs, params.threshold);
    if (params.commit === "factor") return factorCommit(tokenProbs, params.factor);
    const n = scheduledCount(cand.length, r.stepsLeft);
    r.stepsLeft = Math.max(1, r.stepsLeft - 1);
    return params.alg_temp > 0 ? sampleKByConfidence(confs, n, params.alg_temp, orderU()) : topKIndices(confs, n);
  }

  /** Tokens that edit the canvas in variable length: expand, delete/EOS, PAD. */
  private isEdit(t: number): boolean {
    return t === this.params.expand_id || this.isEnd(t);
  }

  private isEnd(t: number): boolean {
    return t === this.params.delete_id || t === this.spec.eosId || t === this.spec.padId;
  }

  private event(r: Row, kind: InfillEventKind, position: number): void {
    if (this.params.trace) r.events.push({ step: r.step, kind, position });
  }

  /** EOS fill: every mask right of the first end token in the middle becomes the delete token. */
  private fillAfterFirstEnd(r: Row): void {
    const { spec, params } = this;
    let k = 0;
    while (k < r.mid && !this.isEnd(r.ids[r.pre + k] as number)) k++;
    const blockEnd = (r.block + 1) * params.block_length;
    for (let j = k + 1; j < r.mid; j++) {
      if (r.ids[r.pre + j] !== spec.maskId) continue;
      r.ids[r.pre + j] = params.delete_id;
      r.commit[j] = r.step;
      // The dual cache holds this position as the mask it was at the refresh.
      if (j >= blockEnd && params.cache === "dual") r.stale = true;
      this.event(r, "eos_fill", j);
    }
  }

  /** DreamOn's edit rules after committing `token` at middle position `k`. */
  private commitVariable(r: Row, k: number, token: number, prob = 1): void {
    const { spec, params } = this;
    if (token === params.expand_id) {
      // One position becomes two masks: the middle grows by one, the suffix shifts right.
      r.ids.splice(r.pre + k, 1, spec.maskId, spec.maskId);
      r.commit.splice(k, 1, 0, 0);
      r.logp.splice(k, 1, 0, 0);
      r.mid++;
      r.budget--;
      r.expands++;
      this.event(r, "expand", k);
      return;
    }
    r.ids[r.pre + k] = token;
    r.commit[k] = r.step;
    r.logp[k] = Math.log(prob);
    if (!this.isEnd(token)) return;
    // Delete: masks right of the end token become it, then every end token in the middle goes
    // (right to left, so the recorded positions are those of the moment).
    for (let j = k + 1; j < r.mid; j++) {
      if (r.ids[r.pre + j] !== spec.maskId) continue;
      r.ids[r.pre + j] = token;
      this.event(r, "eos_fill", j);
    }
    for (let j = r.mid - 1; j >= 0; j--) {
      if (!this.isEnd(r.ids[r.pre + j] as number)) continue;
      r.ids.splice(r.pre + j, 1);
      r.commit.splice(j, 1);
      r.logp.splice(j, 1);
      r.mid--;
      r.deletes++;
      this.event(r, "delete", j);
    }
  }

  private result(r: Row): InfilledSequence {
    const { spec } = this;
    const middleIds: number[] = [];
    const commitSteps: number[] = [];
    let logProb = 0;
    for (let k = 0; k < r.mid; k++) {
      const t = r.ids[r.pre + k] as number;
      if (t === spec.maskId || this.isEnd(t) || t === this.params.expand_id) continue;
      middleIds.push(t);
      commitSteps.push(r.commit[k] as number);
      logProb += r.logp[k] as number;
    }
    return {
      middleIds,
      nfe: r.nfe,
      steps: r.step,
      expands: r.expands,
      deletes: r.deletes,
      logProb,
      ...(this.params.trace ? { commitSteps, events: r.events } : {}),
      decodeSeconds: r.endSeconds,
    };
  }
}
