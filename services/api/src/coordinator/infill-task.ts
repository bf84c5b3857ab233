// The infill task (spec.task "infill"): a job's rows are infilling rows (a middle of whole lines
// cut from each reference solution, shared/src/infill), rolled out with RolloutService.Infill and
// rewarded by running the WHOLE program (prefix + generated middle + suffix) in the sandbox.
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import { loadManifest } from "@rlmesh/shared/model/index";
import { infillProgram, infillRowsFromRows, type InfillRow } from "@rlmesh/shared/infill/index";
import type { DecodingParams, Sample } from "@rlmesh/shared";
import type { InfillSample__Output as InfillSample } from "@rlmesh/shared/gen/rlmesh/v1/InfillSample";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import type { RunnerDeps } from "./runner-deps.js";

/** A job row of an infill job: the canonical row the sandbox scores (its tests) and its cut. */
export interface InfillTaskRow extends CanonicalRow {
  infill: InfillRow;
}

/**
 * A generated sample as the step keeps it: for infill jobs `text` is the whole program (what the
 * reward runs), `promptTokenIds` the prefix, `tokenIds` the middle and `suffixTokenIds` the suffix
 * (what TrainStep needs); absent for completion jobs.
 */
export type StepSample = Sample & { suffixTokenIds?: number[] };

/**
 * A dataset's rows as infilling rows: one seeded whole-line middle per row (the job's seed). A row
 * without a usable reference is a DatasetError naming the file, line and row.
 */
export function infillTaskRows(rows: readonly CanonicalRow[], seed: number, file: string, lines?: readonly number[]): InfillTaskRow[] {
  return infillRowsFromRows(rows, { seed, file, ...(lines ? { lines } : {}) }).map((r, i) => ({
    ...rows[i]!,
    task_id: r.task_id,
    infill: r,
  }));
}

/** The rows of an infill job as infilling rows (every row of such a job is one; loadJobRows made them). */
export function asInfillRows(rows: readonly CanonicalRow[]): InfillTaskRow[] {
  return rows.map((r) => {
    if ((r as Partial<InfillTaskRow>).infill === undefined) throw new Error(`row ${r.task_id} of an infill job has no infilling cut`);
    return r as InfillTaskRow;
  });
}

/**
 * One Infill call for `rows` (ids = their indices), as StepSamples whose text is the whole program.
 * `use` = "train": GRPO's samples, always without a length search (a middle picked among
 * candidates by the model's own score is not a draw from the policy); "eval": the spec's
 * `infill.length_search` (0 unless set; never the model's manifest default).
 */
export async function rolloutInfill(
  rows: readonly InfillTaskRow[],
  samplesPerItem: number,
  params: DecodingParams,
  spec: JobSpec,
  deps: RunnerDeps,
  opts: { signal: AbortSignal; requestId: string; policyJobId: string },
  use: "train" | "eval",
): Promise<StepSample[]> {
  const eosId = await modelEosId(spec.modelDir);
  // The job's decoding cache (checked against the model at submit) applies to fixed-length
  // infilling only: variable length runs uncached (every expand or delete moves the suffix; the
  // worker refuses a cache).
  const infillParams: DecodingParams = spec.infill.variableLength ? { ...params, cache: "none" } : params;
  const res = await deps.rollout.infill(
    rows.map((r, i) => ({
      id: String(i),
      prefix: r.infill.prefix,
      suffix: r.infill.suffix,
      initialLength: spec.infill.initialLength,
      maxLength: spec.infill.maxLength,
    })),
    samplesPerItem,
    infillParams,
    {
      ...opts,
      variableLength: spec.infill.variableLength,
      eosCut: spec.infill.eosCut,
      expandCut: spec.infill.expandCut,
      // Always sent, so the model's default never applies (a spec stored before the field existed has none: 0).
      ...(spec.infill.variableLength ? { lengthSearch: use === "eval" ? (spec.infill.lengthSearch ?? 0) : 0 } : {}),
    },
  );
  return res.samples.map((s) => asStepSample(s, rows[Number(s.itemId)]!, eosId));
}

// The EOS id of each model directory (read once per directory).
const eosIds = new Map<string, Promise<number>>();
function modelEosId(modelDir: string): Promise<number> {
  let id = eosIds.get(modelDir);
  if (!id) {
    id = loadManifest(modelDir).then((m) => m.eos_id);
    id.catch(() => eosIds.delete(modelDir));
    eosIds.set(modelDir, id);
  }
  return id;
}

/**
 * An Infill sample in the step's sample shape; `text` is the program the sandbox runs. The
 * rollout's canvas is prefix | middle | suffix EOS (DreamOn's layout; the sample reports the
 * suffix without its EOS), so the suffix the learner gets ends with `eosId`: the learner's
 * sequence is the one the policy decoded in.
 */
export function asStepSample(s: InfillSample, row: InfillTaskRow, eosId: number): StepSample {
  return {
    promptId: s.itemId,
    sampleIndex: s.sampleIndex,
    promptTokenIds: s.prefixTokenIds,
    tokenIds: s.middleTokenIds,
    suffixTokenIds: [...s.suffixTokenIds, eosId],
    text: infillProgram(row.infill, s.middleText),
    policyVersion: s.policyVersion,
    policyJobId: s.policyJobId,
    nfe: s.nfe,
    timings: null,
    finished: true,
    commitSteps: s.commitSteps,
  };
}
