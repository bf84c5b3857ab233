import { createHash } from "node:crypto";
import { FailedPreconditionError, type TrainStatsIn, type TrainStepRequest } from "@rlmesh/shared";

/**
 * Idempotency of TrainStep per (job_id, step): the api retries a TrainStep after a learner crash,
 * and a step that was already applied (and checkpointed) must return the recorded result instead
 * of training twice. The record travels in the checkpoint.
 */

/** How many recent (job, step) results are remembered (retries only ever concern the newest). */
export const DEFAULT_APPLIED_STEPS_KEPT = 64;

export interface AppliedStep {
  jobId: string;
  step: number;
  /** sha256 of the request's samples, params and seed. */
  fingerprint: string;
  policyVersion: number;
  stats: TrainStatsIn;
}

/** sha256 over what determines the update (not over field order or transport details). */
export function requestFingerprint(req: TrainStepRequest): string {
  const h = createHash("sha256");
  h.update(JSON.stringify([req.jobId, req.step, req.seed, req.params ?? null]));
  for (const s of req.samples) {
    h.update(JSON.stringify([s.promptId, s.reward, s.policyVersion, s.policyJobId]));
    h.update(Int32Array.from(s.promptTokenIds));
    h.update("|");
    h.update(Int32Array.from(s.responseTokenIds));
  }
  return h.digest("hex");
}

export class AppliedSteps {
  private entries: AppliedStep[];

  constructor(
    entries: readonly AppliedStep[] = [],
    private readonly kept = DEFAULT_APPLIED_STEPS_KEPT,
  ) {
    this.entries = entries.slice(-kept);
  }

  /**
   * The recorded result of this request's (job, step), or undefined when it is new. Throws
   * FAILED_PRECONDITION when the step was applied with different inputs.
   */
  find(req: TrainStepRequest, fingerprint = requestFingerprint(req)): AppliedStep | undefined {
    const hit = this.entries.find((e) => e.jobId === req.jobId && e.step === req.step);
    if (hit && hit.fingerprint !== fingerprint) {
      throw new FailedPreconditionError(
        `step ${req.step} of job ${req.jobId} was already applied with different samples/params/seed; a retry must resend the same request`,
      );
    }
    return hit;
  }

  add(e: AppliedStep): void {
    this.entries = [...this.entries.filter((x) => !(x.jobId === e.jobId && x.step === e.step)), e].slice(-this.kept);
  }

  toJSON(): AppliedStep[] {
    return this.entries;
  }
}
