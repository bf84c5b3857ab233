import { BYTE_TO_CHAR, toByteLevel } from "./byte-level.js";
import { preTokenize, WORDISH_SPLIT_PATTERN } from "./pre-tokenize.js";
import type { BpeTokenizerJson } from "./tokenizer-json.js";
import { TINY_SPECIAL_TOKENS } from "./tokenizer-json.js";

export interface TrainBpeOptions {
  /** Special tokens, given ids 0..n-1 in this order. @defaultValue mask, pad, eos, bos */
  specialTokens?: readonly string[];
  /** Stop when the vocabulary (specials + 256 bytes + merges) reaches this size. @defaultValue 1024 */
  maxVocabSize?: number;
  /** Stop when the most frequent pair occurs fewer times than this. @defaultValue 2 */
  minPairFrequency?: number;
}

export const DEFAULT_TRAIN_BPE = {
  specialTokens: [TINY_SPECIAL_TOKENS.mask, TINY_SPECIAL_TOKENS.pad, TINY_SPECIAL_TOKENS.eos, TINY_SPECIAL_TOKENS.bos],
  maxVocabSize: 1024,
  minPairFrequency: 2,
} as const;

const BYTE_LEVEL = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };

/**
 * Trains a byte-level BPE on `texts` and returns it as a HuggingFace tokenizer.json object.
 * All 256 bytes are in the vocabulary, so any text encodes; merges never cross word-ish
 * pieces (see pre-tokenize.ts), so with a closed vocabulary every frequent word ends as one
 * token. Deterministic: ties between equally frequent pairs go to the smaller pair string.
 */
export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions = {}): BpeTokenizerJson {
  const o = { ...DEFAULT_TRAIN_BPE, ...options };
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const piece of preTokenize(text)) {
      const w = toByteLevel(piece);
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }
  const words = [...wordCounts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([w, count]) => ({ symbols: [...w], count }));

  const vocab: Record<string, number> = {};
  o.specialTokens.forEach((t, i) => {
    vocab[t] = i;
  });
  let nextId = o.specialTokens.length;
  for (const ch of BYTE_TO_CHAR) vocab[ch] = nextId++;

  const merges: [string, string][] = [];
  const SEP = "\u0000";
  while (nextId < o.maxVocabSize) {
    const pairCounts = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 1; i < symbols.length; i++) {
        const key = `${symbols[i - 1]}${SEP}${symbols[i]}`;
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined || bestCount < o.minPairFrequency) break;
    const [a, b] = best.split(SEP) as [string, string];
    const merged = a + b;
    merges.push([a, b]);
    if (vocab[merged] === undefined) vocab[merged] = nextId++;
    for (const w of words) {
      const s = w.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(s[i] as string);
        }
      }
      w.symbols = out;
    }
  }

  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: o.specialTokens.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{ type: "Split", pattern: { Regex: WORDISH_SPLIT_PATTERN }, behavior: "Isolated", invert: false }, BYTE_LEVEL],
    },
    post_processor: null,
    decoder: BYTE_LEVEL,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}
