import { readFileSync } from "node:fs";
import type { CanonicalRow } from "./canonical-row.js";
import { DatasetError } from "./dataset-error.js";
import { fromHumanEval } from "./humaneval.js";
import { fromLiveCodeBench } from "./livecodebench.js";
import { fromMbpp } from "./mbpp.js";
import { fromRlmesh } from "./rlmesh-row.js";

export const DATASET_FORMATS = ["auto", "humaneval", "mbpp", "lcb", "rlmesh"] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];
type Converter = (row: Record<string, unknown>, line: number, file?: string) => CanonicalRow;

const CONVERTERS: Record<Exclude<DatasetFormat, "auto">, Converter> = {
  humaneval: fromHumanEval,
  mbpp: fromMbpp,
  lcb: fromLiveCodeBench,
  rlmesh: fromRlmesh,
};

/** Guesses a row's format from its keys; undefined when nothing fits. */
export function detectFormat(row: Record<string, unknown>): Exclude<DatasetFormat, "auto"> | undefined {
  if ("tests" in row && typeof row.tests === "object" && row.tests !== null && "kind" in row.tests) return "rlmesh";
  if ("entry_point" in row && "test" in row) return "humaneval";
  if ("test_list" in row) return "mbpp";
  if ("question_id" in row && ("public_test_cases" in row || "private_test_cases" in row)) return "lcb";
  return undefined;
}

/**
 * Parses JSONL text into canonical rows (blank lines skipped). Every problem is reported as a
 * DatasetError naming the line and field; task ids must be unique.
 */
export function parseDataset(text: string, format: DatasetFormat = "auto", file?: string): CanonicalRow[] {
  const rows: CanonicalRow[] = [];
  const seen = new Map<string, number>();
  let fmt: Exclude<DatasetFormat, "auto"> | undefined = format === "auto" ? undefined : format;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const src = lines[i]!.trim();
    if (src === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(src);
    } catch (err) {
      throw new DatasetError(lineNo, "(row)", `invalid JSON: ${(err as Error).message}`, file);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new DatasetError(lineNo, "(row)", "expected a JSON object", file);
    const row = obj as Record<string, unknown>;
    if (fmt === undefined) {
      fmt = detectFormat(row);
      if (fmt === undefined) {
        throw new DatasetError(lineNo, "(row)", `cannot tell the format from keys [${Object.keys(row).join(", ")}]; pass --format humaneval|mbpp|lcb|rlmesh`, file);
      }
    }
    const converted = CONVERTERS[fmt](row, lineNo, file);
    const prev = seen.get(converted.task_id);
    if (prev !== undefined) throw new DatasetError(lineNo, "task_id", `duplicate task id ${JSON.stringify(converted.task_id)} (first on line ${prev})`, file);
    seen.set(converted.task_id, lineNo);
    rows.push(converted);
  }
  return rows;
}

/**
 * Reads a dataset file as strict UTF-8: a file that cannot be read, or bytes that are not UTF-8
 * (which a lenient read would silently replace), is a DatasetError naming the file and line.
 */
export function readDatasetText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "EISDIR" ? "is a directory, expected a JSONL file" : code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : (err as Error).message;
    throw new DatasetError(0, "(file)", why, path);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, i));
        } catch {
          break;
        }
        line++;
        start = i + 1;
      }
    }
    throw new DatasetError(line, "(row)", "is not valid UTF-8 (re-encode the file as UTF-8)", path);
  }
}

/** Reads and parses a JSONL dataset file. */
export function loadDataset(path: string, format: DatasetFormat = "auto"): CanonicalRow[] {
  return parseDataset(readDatasetText(path), format, path);
}
