// Infilling rows (DreamOn's "line" middle strategy): a reference solution cut into a prefix, a
// middle of whole lines, and a suffix. Pure; the only randomness is a seeded choice per row.
import { basename } from "node:path";

import type { CanonicalRow, DatasetSource, TestSpec } from "../datasets/canonical-row.js";
import { DatasetError } from "../datasets/dataset-error.js";
import { loadDataset, readDatasetText } from "../datasets/load-dataset.js";
import { createRng, hashSeed } from "../toy/prng.js";

/**
 * One infilling problem. The model sees `prefix` (the problem statement, the opening fence and
 * the code lines before the middle), then the middle, then `suffix`; the program tested is
 * {@link infillProgram}. Line breaks go at the START of each middle line ("\ndef…"), never at the
 * end of the prefix: the tiny coder's pre-tokenizer glues a newline to the indentation after it,
 * so this split is the one whose tokens equal the whole reference's tokens (checked on every row
 * of datasets/toy/train.jsonl), i.e. encode(prefix) + encode(middle) + encode(suffix) is what
 * the base model was trained on.
 */
export interface InfillRow {
  /** `<source task_id>#L<a>-<b>`: the source row and the code lines [a, b) removed (0-based). */
  task_id: string;
  source_task_id: string;
  source: DatasetSource;
  tests: TestSpec;
  /** The problem statement alone (the start of `prefix`). */
  prompt: string;
  /** What precedes the middle: prompt + opening fence + code lines before the middle (no trailing newline). */
  prefix: string;
  /** The true middle: each removed line preceded by "\n". Its token count is the oracle length. */
  middle: string;
  /** What follows the middle: "\n" + the remaining code lines + the closing fence. */
  suffix: string;
  /** Code lines [start, end) that form the middle (0 = the first line inside the fence). */
  middle_lines: [number, number];
  /** 1-based line of the source row in its file (0 when not from a file). */
  line: number;
}

export interface InfillRowOptions {
  /** Seed of the middle choice; each row's choice depends only on this seed and its task id. @defaultValue 1 */
  seed?: number;
  /** File the rows came from (named in errors). */
  file?: string;
  /** 1-based file line of each row (same order as the rows), for errors and `InfillRow.line`. */
  lines?: readonly number[];
  /** Longest middle in lines (a random run of 1..maxLines whole lines). @defaultValue no limit */
  maxLines?: number;
  /** Every qualifying middle of each row (one row per span, in span order) instead of one seeded pick: training data. */
  allSpans?: boolean;
}

/** What a row's code block looks like: fence line, code lines, closing fence. */
interface CodeBlock {
  open: string;
  code: string[];
  close: string;
}

/** Fewest whitespace-separated words a middle must have (DreamOn drops trivial middles). */
export const MIN_MIDDLE_WORDS = 3;

/**
 * The spans a reference's code lines allow as a middle, following DreamOn's rules: a run of whole
 * lines that is not the whole program (some context must remain) and holds no `def` line (the
 * signature stays as context), no blank edge line; among those, the ones with at least
 * {@link MIN_MIDDLE_WORDS} words when there are any (DreamOn retries its draw for such a middle and
 * keeps a shorter one when the retries run out; e.g. `return s[:4][-9:]` is two words).
 */
export function middleCandidates(code: readonly string[], maxLines = Infinity): [number, number][] {
  const all = lineRuns(code, maxLines);
  const wordy = all.filter(([a, b]) => code.slice(a, b).join(" ").split(/\s+/).filter((w) => w !== "").length >= MIN_MIDDLE_WORDS);
  return wordy.length > 0 ? wordy : all;
}

function lineRuns(code: readonly string[], maxLines: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < code.length; a++) {
    for (let b = a + 1; b <= Math.min(code.length, a + maxLines); b++) {
      if (a === 0 && b === code.length) continue;
      const lines = code.slice(a, b);
      if (lines[0]!.trim() === "" || lines.at(-1)!.trim() === "") continue;
      if (lines.some((l) => /^\s*(async\s+)?def\s/.test(l))) continue;
      out.push([a, b]);
    }
  }
  return out;
}

/**
 * The reference's code block: its one fenced block (```python … ```), or, for a bare reference
 * (MBPP's `code`), the whole text wrapped in a python fence. Null when the reference has text
 * outside its fence or several blocks (no single program to cut).
 */
function codeBlockOf(reference: string): CodeBlock | null {
  const text = reference.replace(/\r\n/g, "\n").replace(/\n+$/, "");
  const lines = text.split("\n");
  const fenced = lines.filter((l) => /^ {0,3}(`{3,}|~{3,})/.test(l));
  if (fenced.length === 0) return { open: "```python", code: lines, close: "```" };
  if (fenced.length !== 2 || !/^ {0,3}(`{3,}|~{3,})/.test(lines[0]!) || !/^ {0,3}(`{3,}|~{3,})\s*$/.test(lines.at(-1)!)) return null;
  return { open: lines[0]!, code: lines.slice(1, -1), close: lines.at(-1)! };
}

/** Cuts one row at code lines [a, b). */
export function cutRow(row: CanonicalRow, block: { open: string; code: readonly string[]; close: string }, a: number, b: number, line = 0): InfillRow {
  const before = [block.open, ...block.code.slice(0, a)].join("\n");
  const middle = block.code
    .slice(a, b)
    .map((l) => `\n${l}`)
    .join("");
  const suffix = [...block.code.slice(b), block.close].map((l) => `\n${l}`).join("");
  return {
    task_id: `${row.task_id}#L${a}-${b}`,
    source_task_id: row.task_id,
    source: row.source,
    tests: row.tests,
    prompt: row.prompt,
    prefix: row.prompt + before,
    middle,
    suffix,
    middle_lines: [a, b],
    line,
  };
}

/**
 * One infilling row per dataset row: a random run of whole lines of its reference solution (the
 * choice seeded by `seed` and the row's task id, so it does not depend on the other rows). A row
 * without a usable reference (none, no single code block, or no line run that qualifies) is a
 * DatasetError naming the file, line and field.
 */
export function infillRowsFromRows(rows: readonly CanonicalRow[], options: InfillRowOptions = {}): InfillRow[] {
  const seed = options.seed ?? 1;
  return rows.flatMap((row, i) => {
    const line = options.lines?.[i] ?? 0;
    const fail = (detail: string): never => {
      throw new DatasetError(line, "reference", `row ${JSON.stringify(row.task_id)} ${detail}`, options.file);
    };
    if (row.reference === undefined || row.reference.trim() === "") return fail("has no reference solution to cut a middle from");
    const block = codeBlockOf(row.reference);
    if (block === null) return fail("is not a single fenced code block (text outside the fence or several blocks)");
    const spans = middleCandidates(block.code, options.maxLines);
    if (spans.length === 0) {
      return fail(
        `has no run of whole lines usable as a middle (${block.code.length} code line(s); a middle leaves some code and holds no def line)`,
      );
    }
    if (options.allSpans) return spans.map(([a, b]) => cutRow(row, block, a, b, line));
    const rng = createRng(hashSeed(`${seed}|${row.task_id}`));
    const [a, b] = spans[rng.int(0, spans.length - 1)]!;
    return [cutRow(row, block, a, b, line)];
  });
}

/** The response text whose program the sandbox tests: the code of prefix + middle + suffix as one fenced block. */
export function infillProgram(row: Pick<InfillRow, "prompt" | "prefix" | "suffix">, middle: string): string {
  return row.prefix.slice(row.prompt.length) + middle + row.suffix;
}

/** Which splits a file may feed: held-out infilling rows come only from the held-out splits. */
export type InfillPurpose = "train" | "heldout";
export const TRAIN_SPLIT_FILES: readonly string[] = ["train.jsonl"];
export const HELDOUT_SPLIT_FILES: readonly string[] = ["test-instances.jsonl", "test-compositional.jsonl"];

/**
 * Infilling rows of a dataset file for `purpose`: training rows never from a held-out split file
 * (test-instances / test-compositional), held-out rows never from train.jsonl. Other file names
 * (a user's dataset) are taken as given.
 */
export function loadInfillRows(path: string, purpose: InfillPurpose, options: Omit<InfillRowOptions, "file" | "lines"> = {}): InfillRow[] {
  const name = basename(path);
  if (purpose === "heldout" && TRAIN_SPLIT_FILES.includes(name)) {
    throw new DatasetError(0, "(file)", `is a training split; held-out infilling rows come only from ${HELDOUT_SPLIT_FILES.join(" or ")}`, path);
  }
  if (purpose === "train" && HELDOUT_SPLIT_FILES.includes(name)) {
    throw new DatasetError(0, "(file)", "is a held-out split; training infilling rows must not come from it", path);
  }
  const rows = loadDataset(path);
  return infillRowsFromRows(rows, { ...options, file: path, lines: nonBlankLines(readDatasetText(path)) });
}

/** 1-based numbers of the non-blank lines of JSONL text (parseDataset makes one row of each, in order). */
export function nonBlankLines(text: string): number[] {
  const out: number[] = [];
  text.split("\n").forEach((l, i) => {
    if (l.trim() !== "") out.push(i + 1);
  });
  return out;
}
