// The domain error a job fails with when the learner's collapse guard gives up.

/**
 * The learner's collapse guard gave up (its rollbacks are spent, or no good checkpoint is left):
 * the job fails with the guard's reason instead of training a collapsing policy on.
 */
export class CollapseGuardStop extends Error {
  constructor(
    readonly step: number,
    reason: string,
  ) {
    super(`collapse guard stopped the job at step ${step} (${reason})`);
    this.name = "CollapseGuardStop";
  }
}
