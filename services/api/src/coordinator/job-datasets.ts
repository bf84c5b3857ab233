// A job's datasets: loading with the spec's filters, and the submit-time check.
import { loadDataset, readDatasetText, testCount, type CanonicalRow, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { nonBlankLines } from "@rlmesh/shared/infill/index";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "@rlmesh/shared";
import type { TrainShape } from "@rlmesh/shared/gen/rlmesh/v1/TrainShape";
import { loadManifest, MANIFEST_FILE, type ModelManifest } from "@rlmesh/shared/model/index";
import { loadTokenizer, type LoadedTokenizer } from "@rlmesh/shared/tokenizer/index";
import type { NormalizedDatasetSpec, NormalizedJobSpec as JobSpec } from "../job-spec.js";
import { infillTaskRows, type InfillTaskRow } from "./infill-task.js";

/**
 * Rejects a job whose datasets do not load, or whose prompts do not fit the model: every row's
 * prompt tokens plus the spec's decoding.max_new_tokens must fit the model's max_seq_len (the
 * rollout worker would refuse the row when it is drawn, failing the job mid-run). Throws
 * INVALID_ARGUMENT naming the dataset field, the file, the row and the numbers.
 */
export async function validateDatasets(spec: JobSpec): Promise<void> {
  const fit = await promptBudget(spec);
  for (const [field, ds] of [
    ["spec.dataset", spec.dataset] as const,
    ["spec.eval_dataset", spec.evalDataset] as const,
    ...spec.extraEvalDatasets.map((d, i) => [`spec.extra_eval_datasets[${i}]`, d] as const),
  ]) {
    if (!ds.path) continue;
    let rows: CanonicalRow[];
    try {
      rows = loadRows(ds);
    } catch (err) {
      throw new InvalidArgumentError(`${field}.path`, (err as Error).message);
    }
    if (rows.length === 0) throw new InvalidArgumentError(`${field}.path`, `${ds.path} has no rows after filters`);
    if (spec.task === "infill") {
      // Every row must cut into an infilling row (a reference with a whole-line middle).
      let cut: InfillTaskRow[];
      try {
        cut = loadJobRows(ds, spec) as InfillTaskRow[];
      } catch (err) {
        throw new InvalidArgumentError(`${field}.path`, (err as Error).message);
      }
      if (fit) checkInfillFits(field, ds.path, cut, spec, fit);
      continue;
    }
    if (!fit) continue;
    for (const [i, row] of rows.entries()) {
      const n = fit.count(row.prompt);
      if (n > fit.maxPromptTokens) {
        throw new InvalidArgumentError(
          `${field}.path`,
          `${ds.path}: row ${i + 1} (task ${row.task_id}) has a ${n}-token prompt; with decoding.max_new_tokens ${spec.decoding.maxNewTokens} ` +
            `the model's max_seq_len ${fit.maxSeqLen} leaves room for ${fit.maxPromptTokens} prompt tokens (shorten the prompt, lower max_new_tokens, or filter the dataset)`,
        );
      }
    }
  }
}

/** An infill job's prefix + longest middle + suffix must fit the model's max_seq_len. */
function checkInfillFits(field: string, path: string, rows: readonly InfillTaskRow[], spec: JobSpec, fit: { count: (text: string) => number; maxSeqLen: number }): void {
  const longest = Math.max(spec.infill.maxLength, spec.infill.initialLength);
  for (const row of rows) {
    const n = fit.count(row.infill.prefix) + fit.count(row.infill.suffix) + longest;
    if (n > fit.maxSeqLen) {
      throw new InvalidArgumentError(
        `${field}.path`,
        `${path}: row ${row.infill.line} (task ${row.infill.source_task_id}) needs ${n} positions (prefix + suffix + infill.max_length ${longest}), the model's max_seq_len is ${fit.maxSeqLen}`,
      );
    }
  }
}

/** How many prompt tokens fit next to the spec's max_new_tokens, and the model's tokenizer. */
async function promptBudget(spec: JobSpec): Promise<{ count: (text: string) => number; maxPromptTokens: number; maxSeqLen: number } | null> {
  if (!existsSync(join(spec.modelDir, MANIFEST_FILE))) {
    throw new InvalidArgumentError("spec.model_dir", `${spec.modelDir} has no ${MANIFEST_FILE}: not a model directory`);
  }
  let manifest: ModelManifest;
  try {
    manifest = await loadManifest(spec.modelDir);
  } catch (err) {
    throw new InvalidArgumentError("spec.model_dir", `${spec.modelDir}: ${(err as Error).message}`);
  }
  if (spec.task === "infill" && spec.infill.variableLength && manifest.expand_id === undefined) {
    throw new InvalidArgumentError(
      "spec.infill.variable_length",
      `${spec.modelDir} declares no expand_id: variable-length infilling needs a model trained for it (e.g. models/tiny-coder-infill), or set variable_length false`,
    );
  }
  // The decoding cache the job's rollouts use (variable-length infilling runs without one) must be
  // one the model serves: refused here, not by the rollout worker at the first step.
  const cache = spec.decoding.cache;
  const usesCache = !(spec.task === "infill" && spec.infill.variableLength);
  if (usesCache && cache !== undefined && cache !== "none" && !(manifest.cache_support as readonly string[]).includes(cache)) {
    throw new InvalidArgumentError(
      "spec.decoding.cache",
      `${cache}: ${spec.modelDir} serves ${manifest.cache_support.length ? manifest.cache_support.join(", ") : "no KV cache"}; set decoding.cache ${manifest.cache_support.length ? `to one of them or ` : ""}to none`,
    );
  }
  const maxNew = spec.decoding.maxNewTokens ?? 0;
  const maxPromptTokens = manifest.max_seq_len - maxNew;
  if (maxPromptTokens < 1) {
    throw new InvalidArgumentError("spec.decoding.max_new_tokens", `${maxNew} leaves no room for a prompt in the model's max_seq_len ${manifest.max_seq_len}`);
  }
  const tokenizerPath = join(spec.modelDir, manifest.files.tokenizer);
  if (!existsSync(tokenizerPath)) return null; // a token-id model: the rollout worker checks lengths itself
  const tok = await cachedTokenizer(tokenizerPath);
  return { count: (text) => tok.encode(text).length, maxPromptTokens, maxSeqLen: manifest.max_seq_len };
}

/**
 * The shape of the job's TrainSteps for the learner's warm-up (StartJob's train_shape): rows
 * prompts_per_step × group_size, the shortest and longest of the training `rows`' prompts (the
 * job's rows, as the runner loaded them) in the model's tokens, responses up to
 * decoding.max_new_tokens. Null (the learner's configured recipe serves) for an infill job (its
 * rows are prefix + middle + suffix) and a model without a tokenizer.
 */
export async function jobTrainShape(spec: JobSpec, rows: readonly CanonicalRow[]): Promise<Required<TrainShape> | null> {
  const responseTokens = spec.decoding.maxNewTokens;
  if (spec.task === "infill" || !responseTokens) return null;
  const fit = await promptBudget(spec);
  if (!fit) return null;
  let lo = Infinity;
  let hi = 0;
  for (const row of rows) {
    const n = fit.count(row.prompt);
    lo = Math.min(lo, n);
    hi = Math.max(hi, n);
  }
  if (hi === 0) return null;
  return { rows: spec.promptsPerStep * spec.groupSize, promptTokensMin: lo, promptTokensMax: hi, responseTokens };
}

// One parsed tokenizer per file: every submit of a job on the same model would otherwise read
// and parse it again.
const tokenizers = new Map<string, Promise<LoadedTokenizer>>();
export function cachedTokenizer(path: string): Promise<LoadedTokenizer> {
  let t = tokenizers.get(path);
  if (!t) {
    t = loadTokenizer(path);
    t.catch(() => tokenizers.delete(path));
    tokenizers.set(path, t);
  }
  return t;
}

/** Loads a dataset spec into canonical rows, applying its filters. */
export function loadRows(spec: NormalizedDatasetSpec): CanonicalRow[] {
  let rows = loadDataset(spec.path, spec.format as DatasetFormat);
  if (spec.minTests > 0) rows = rows.filter((r) => testCount(r.tests) >= spec.minTests);
  if (spec.dedupe) {
    const seen = new Set<string>();
    rows = rows.filter((r) => !seen.has(r.prompt) && (seen.add(r.prompt), true));
  }
  if (spec.limit > 0) rows = rows.slice(0, spec.limit);
  return rows;
}

/**
 * A job's rows for its task: the dataset's rows (completion), or one infilling row per dataset row
 * (infill: a seeded whole-line middle of its reference; a row without one is a DatasetError naming
 * the file's line and the row).
 */
export function loadJobRows(ds: NormalizedDatasetSpec, spec: Pick<JobSpec, "task" | "seed">): CanonicalRow[] {
  const rows = loadRows(ds);
  if (spec.task !== "infill") return rows;
  // The file line of each row (filters drop rows; parseDataset makes one row per non-blank line).
  const lines = nonBlankLines(readDatasetText(ds.path));
  const lineOf = new Map(loadDataset(ds.path, ds.format as DatasetFormat).map((r, i) => [r.task_id, lines[i] ?? 0]));
  return infillTaskRows(
    rows,
    Number(spec.seed),
    ds.path,
    rows.map((r) => lineOf.get(r.task_id) ?? 0),
  );
}
