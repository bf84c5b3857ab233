// A job's datasets: loading with the spec's filters, and the submit-time check.
import { loadDataset, testCount, type CanonicalRow, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { InvalidArgumentError } from "@rlmesh/shared";
import type { NormalizedDatasetSpec, NormalizedJobSpec as JobSpec } from "../job-spec.js";

/** Rejects a job whose datasets do not load: INVALID_ARGUMENT naming the row and field. */
export function validateDatasets(spec: JobSpec): void {
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
  }
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
