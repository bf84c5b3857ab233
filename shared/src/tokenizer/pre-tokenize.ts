/**
 * Word-ish pre-tokenization for the tiny coder: a word (with its leading space), a whole number,
 * one punctuation character, or a run of whitespace. Measured: word-ish tokens made the toy
 * tasks learnable in ~15 CPU-minutes where characters did not (ARCHITECTURE.md). Numbers are
 * whole pre-tokens so BPE learns the frequent ones (0–19 in the toy suite) as single tokens:
 * with one digit per token a masked-diffusion model must guess a constant's length before the
 * positions of all the code after it are fixed, and the tiny model's greedy output came out
 * shifted (`range(1, n + + 1 1 if`). The same pattern goes into tokenizer.json (Split,
 * Isolated), so the trainer and the loader agree.
 */
export const WORDISH_SPLIT_PATTERN = " ?[\\p{L}_]+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}_]|\\s+(?!\\S)|\\s+";

const SPLIT_RE = new RegExp(WORDISH_SPLIT_PATTERN, "gu");

/** The pieces BPE merges within (never across). */
export function preTokenize(text: string): string[] {
  return text.match(SPLIT_RE) ?? [];
}
