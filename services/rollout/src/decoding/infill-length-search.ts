/**
 * Length search for variable-length infilling (rlmesh's addition to DreamOn's decoding).
 *
 * A small DreamOn-trained model knows what a middle says far better than how long it is: on the
 * shipped tiny-coder-infill, fixed masks of the true length pass 84.5 % of held-out rows, while
 * its expand/delete decode alone passes 25 % (1.7 tokens off on average), and a middle of the
 * wrong length almost never passes. So after the expand/delete decode reaches a length L0,
 * the middle is also decoded at every fixed length L0 − W … L0 + W (≥ 1, ≤ the item's
 * max_length and max_seq_len; Fast-dLLM's threshold rule at SEARCH_THRESHOLD, its dual cache
 * where the model serves it), and every distinct
 * candidate (the variable decode's own included) is scored by the model with two forwards:
 *  - fit:  Σ ln p(candidate token k) over a canvas with the whole middle masked (prefix, the
 *          candidate's length in masks, suffix): how well the model predicts this middle at this
 *          length from the context alone;
 *  - end:  ln p(EOS) at the first of END_PADS masks placed right after the filled-in candidate,
 *          plus LATER_PAD_WEIGHT × ln p(EOS) at each later one: whether the model says the middle
 *          is complete there (DreamOn trains the padding after a middle as masked EOS);
 * score = fit + end − LENGTH_PENALTY × |length − L0|. A fixed-length decode that ended early
 * (committed EOS inside its span) is not a candidate: the shorter lengths are searched on their
 * own. The candidates come back sorted by score (ties: the length nearer L0, then the variable
 * decode's own); the rollout engine screens them by syntax before taking the first
 * (InfillParams.syntax_check). Chosen on training-split rows against other scores (the decodes'
 * own log-probabilities with a length bonus, pseudo-likelihoods, half-masked likelihoods, the
 * neighbouring context's likelihood); services/rollout/README.md, "Length search", has the numbers.
 *
 * NFE: a sample counts every forward it took part in: its variable decode, each fixed decode and
 * two scoring forwards per distinct candidate.
 */
import { logitRow, type Denoiser } from "./denoiser.js";
import type { DecodeOptions } from "./diffusion-decoder.js";
import { DecodeAbortedError } from "./diffusion-decoder.js";
import type { InfilledSequence, InfillInput } from "./infill-decoder.js";
import { fullForwardInput } from "./kv-cache.js";
import { softmaxLogProb, softmaxNorm } from "./sampling.js";
import type { InfillParams } from "./infill-params.js";

/** What a candidate's own decode reports (its steps, edits and log-probabilities; commit steps and events with trace). */
export type CandidateDecode = Omit<InfilledSequence, "middleIds" | "nfe" | "decodeSeconds" | "candidates">;

/** One candidate middle of a length search, with the model's score of it. */
export interface LengthCandidate {
  middleIds: number[];
  /** fit + end (see the file comment); higher is better; −Infinity when the model gave no finite score. */
  score: number;
  /** Set on the variable (expand/delete) decode's own middle. */
  variable: boolean;
  decode: CandidateDecode;
}

type DecodeFn = (model: Denoiser, inputs: readonly InfillInput[], params: InfillParams, opts: DecodeOptions) => Promise<InfilledSequence[]>;

/**
 * The fixed-length decodes commit by Fast-dLLM's threshold rule at this confidence (or the
 * request's threshold when lower): proposals for the scorer, at about half the forwards of one
 * token per step and the same pass@1 on training-split rows (README, "Length search").
 */
export const SEARCH_THRESHOLD = 0.9;

/**
 * The search decodes and scores at most this many sequences per forward, or the caller's batch
 * when larger (the decode worker's batch limit bounds that), never 2W + 1 times the batch at once.
 */
const MIN_SEARCH_BATCH = 16;

/** The end score's masks after a candidate, the weight of each one after the first, and the score's cost per token of distance from L0. */
export const END_PADS = 3;
export const LATER_PAD_WEIGHT = 0.5;
export const LENGTH_PENALTY = 0.25;

/** The fixed-length lengths a search tries around `l0` for an item with `maxLength`. */
export function searchLengths(l0: number, radius: number, maxLength: number): number[] {
  const out: number[] = [];
  for (let l = Math.max(1, l0 - radius); l <= Math.min(maxLength, l0 + radius); l++) out.push(l);
  return out;
}

/**
 * Runs `decode` variable-length, then the length search around each row's result; the returned
 * sequences hold the best-scored candidate and `candidates`, best first.
 */
export async function decodeWithLengthSearch(
  decode: DecodeFn,
  model: Denoiser,
  inputs: readonly InfillInput[],
  params: InfillParams,
  opts: DecodeOptions,
): Promise<InfilledSequence[]> {
  const t0 = performance.now();
  const first = await decode(model, inputs, { ...params, length_search: 0 }, opts);
  // Fixed-length decodes at the lengths around each row's variable result, in one batch.
  const fixedParams: InfillParams = {
    ...params,
    variable: false,
    length_search: 0,
    eos_cut: 0,
    expand_cut: 0,
    commit: "threshold",
    threshold: Math.min(params.variable_threshold, SEARCH_THRESHOLD),
    cache: params.search_cache,
  };
  const chunk = Math.max(inputs.length, MIN_SEARCH_BATCH);
  const plan: Array<{ row: number; length: number }> = [];
  inputs.forEach((inp, i) => {
    // The end score's canvas holds END_PADS masks more than the candidate: it must fit max_seq_len too.
    const room = model.spec.maxSeqLen - inp.prefix.length - inp.suffix.length - END_PADS;
    for (const length of searchLengths(first[i]!.middleIds.length, params.length_search, Math.min(inp.maxLength, room))) plan.push({ row: i, length });
  });
  const fixed: InfilledSequence[] = [];
  for (let j = 0; j < plan.length; j += chunk) {
    const part = plan.slice(j, j + chunk).map(({ row, length }) => ({ ...inputs[row]!, initialLength: length, maxLength: length }));
    fixed.push(...(await decode(model, part, fixedParams, opts)));
  }
  const candidate = (s: InfilledSequence, variable: boolean): LengthCandidate => {
    const { middleIds, nfe: _n, decodeSeconds: _d, candidates: _c, ...decoded } = s;
    return { middleIds, score: 0, variable, decode: decoded };
  };
  // Distinct candidates per row: the variable decode's first.
  const perRow: LengthCandidate[][] = first.map((s) => [candidate(s, true)]);
  const seen = first.map((s) => new Set([s.middleIds.join(",")]));
  const nfe = first.map((s) => s.nfe);
  plan.forEach(({ row, length }, k) => {
    const s = fixed[k]!;
    nfe[row]! += s.nfe;
    // Ended early (EOS inside the span): that shorter length is searched on its own.
    if (s.middleIds.length !== length) return;
    const key = s.middleIds.join(",");
    if (seen[row]!.has(key)) return;
    seen[row]!.add(key);
    perRow[row]!.push(candidate(s, false));
  });
  const scoringForwards = await scoreCandidates(model, inputs, perRow, chunk, opts);
  perRow.forEach((cands, i) => {
    for (const c of cands) c.score -= LENGTH_PENALTY * Math.abs(c.middleIds.length - first[i]!.middleIds.length);
  });
  const seconds = (performance.now() - t0) / 1000;
  return first.map((s, i) => {
    const cands = perRow[i]!.sort(byScore(s.middleIds.length));
    const best = cands[0]!;
    // The winner's own decode describes the sample (a fixed-length winner made no expand or delete).
    return { ...best.decode, middleIds: best.middleIds, nfe: nfe[i]! + scoringForwards[i]!, candidates: cands, decodeSeconds: seconds };
  });
}

/** Best first: higher score, then the length nearer `l0` (the variable decode's), then the variable decode's own. */
function byScore(l0: number): (a: LengthCandidate, b: LengthCandidate) => number {
  return (a, b) =>
    a.score !== b.score
      ? b.score > a.score
        ? 1
        : -1
      : Math.abs(a.middleIds.length - l0) - Math.abs(b.middleIds.length - l0) || Number(b.variable) - Number(a.variable);
}

/**
 * Sets each candidate's score to fit + end (two forwards per candidate, one for an empty middle,
 * batched); returns the scoring forwards each row took part in.
 */
async function scoreCandidates(model: Denoiser, inputs: readonly InfillInput[], perRow: LengthCandidate[][], chunk: number, opts: DecodeOptions): Promise<number[]> {
  const { spec } = model;
  const V = spec.vocabSize;
  const allowed = Math.min(spec.tokenizerVocabSize ?? V, V);
  const row = new Float64Array(allowed);
  // One scoring sequence: its ids, and the (canvas position, token, weight) whose weight × ln p it adds to `cand`.
  interface Job {
    ids: number[];
    reads: Array<[number, number, number]>;
    cand: LengthCandidate;
  }
  const jobs: Job[] = [];
  const forwards = perRow.map(() => 0);
  perRow.forEach((cands, i) => {
    const pre = Array.from(inputs[i]!.prefix);
    const suf = Array.from(inputs[i]!.suffix);
    const P = pre.length;
    for (const cand of cands) {
      const L = cand.middleIds.length;
      if (L > 0) {
        jobs.push({
          ids: [...pre, ...new Array<number>(L).fill(spec.maskId), ...suf],
          reads: cand.middleIds.map((t, k): [number, number, number] => [P + k, t, 1]),
          cand,
        });
      }
      // Fewer pads only where max_seq_len leaves no room (a variable decode that filled it).
      const pads = Math.max(0, Math.min(END_PADS, spec.maxSeqLen - P - L - suf.length));
      if (pads > 0) {
        jobs.push({
          ids: [...pre, ...cand.middleIds, ...new Array<number>(pads).fill(spec.maskId), ...suf],
          reads: Array.from({ length: pads }, (_, k): [number, number, number] => [P + L + k, spec.eosId, k === 0 ? 1 : LATER_PAD_WEIGHT]),
          cand,
        });
      }
      forwards[i]! += Number(L > 0) + Number(pads > 0);
    }
  });
  for (let j = 0; j < jobs.length; j += chunk) {
    if (opts.signal?.aborted) throw new DecodeAbortedError(opts.signal.reason);
    const group = jobs.slice(j, j + chunk);
    const input = fullForwardInput(
      group.map((g) => g.ids),
      spec,
    );
    const T = input.length;
    opts.onForward?.({ kind: "full", batch: input.batch, length: T, pastLength: 0 });
    const { logits } = await model.forward(input);
    group.forEach((g, b) => {
      for (const [p, tok, w] of g.reads) {
        const off = (b * T + logitRow(spec, p)) * V;
        // ln softmax over the tokens a decode may write (no MASK, nothing past the tokenizer), as the decoder's.
        row.set(logits.subarray(off, off + allowed));
        row[spec.maskId] = -Infinity;
        g.cand.score += w * softmaxLogProb(row, 0, softmaxNorm(row, 0, allowed), tok);
      }
    });
  }
  for (const cands of perRow) for (const c of cands) if (!Number.isFinite(c.score)) c.score = -Infinity;
  return forwards;
}
