// A job's datasets: loading with the spec's filters, and the submit-time check.
import { loadDataset, testCount, type CanonicalRow, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "@rlmesh/shared";
import { loadManifest, MANIFEST_FILE, type ModelManifest } from "@rlmesh/shared/model/index";
import { loadTokenizer, type LoadedTokenizer } from "@rlmesh/shared/tokenizer/index";
import type { NormalizedDatasetSpec, NormalizedJobSpec as JobSpec } from "../job-spec.js";

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
