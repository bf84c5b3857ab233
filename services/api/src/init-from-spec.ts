// A job spec's init_from: where the job's first weights come from instead of model_dir's.
import { InvalidArgumentError, type InitFrom } from "@rlmesh/shared";

/** init_from validated: exactly one source, or null (start from model_dir). */
export type NormalizedInitFrom = { job: string } | { checkpoint: string };

/** Job ids name directories on the learner (see JobStore.newId). */
const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks a spec's init_from. The job's state (it must have SUCCEEDED) is checked when the job
 * starts, and a checkpoint directory by the learner on its host (the api may run elsewhere).
 */
export function normalizeInitFrom(field: string, i: Partial<InitFrom> | null | undefined): NormalizedInitFrom | null {
  if (!i) return null;
  const job = i.job ?? "";
  const checkpoint = i.checkpoint ?? "";
  if (job && checkpoint) throw new InvalidArgumentError(field, "give job or checkpoint, not both");
  if (job) {
    if (!JOB_ID_PATTERN.test(job)) throw new InvalidArgumentError(`${field}.job`, `is not a job id: ${JSON.stringify(job)}`);
    return { job };
  }
  if (checkpoint) return { checkpoint };
  if (i.source) throw new InvalidArgumentError(`${field}.${i.source}`, "must not be empty");
  return null;
}
