// The start of a job on the learner: its model (or init_from) at policy version 0, pushed to every
// rollout worker before the first rollout; a job with checkpoints of its own resumes from them.
import { InvalidArgumentError, type Job } from "@rlmesh/shared";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import type { RunnerDeps } from "./runner-deps.js";
import { jobTrainShape } from "./job-datasets.js";

/** `rows`: the job's training rows, as the runner loaded them (their prompts give the warm-up's shape). */
export async function startOnLearner(job: Job, spec: JobSpec, rows: readonly CanonicalRow[], deps: RunnerDeps, signal: AbortSignal): Promise<void> {
  const initFrom = spec.initFrom ?? null;
  if (initFrom && "job" in initFrom && job.step === 0) {
    const source = await deps.store.get(initFrom.job);
    if (!source) throw new InvalidArgumentError("spec.init_from.job", `no job ${initFrom.job}`);
    if (source.state !== "JOB_STATE_SUCCEEDED") {
      throw new InvalidArgumentError("spec.init_from.job", `job ${initFrom.job} is ${source.state}; only a SUCCEEDED job's final weights can start another job`);
    }
  }
  // The job's TrainStep shape for the learner's warm-up; without it the learner warms the shapes of
  // its configured recipe (the demo's). Only an optimisation: a model whose tokenizer cannot be
  // read here now (it was checked at submit) leaves it out.
  const trainShape = await jobTrainShape(spec, rows).catch((err: unknown) => {
    deps.logger.warn("cannot work out the job's train shape for the learner's warm-up", { job: job.id, err: (err as Error).message });
    return null;
  });
  const r = await deps.learner.startJob(
    { jobId: job.id, modelDir: spec.modelDir, ...(initFrom ? { initFrom } : {}), ...(trainShape ? { trainShape } : {}) },
    signal,
  );
  const where = `weights on ${r.pushedTo.length > 0 ? r.pushedTo.join(", ") : "no rollout worker yet"}${r.pushFailed.length > 0 ? `; ${r.pushFailed.join(", ")} will catch up` : ""}`;
  await deps.store.appendEvent(job.id, {
    log: {
      level: "info",
      message: r.resumed
        ? `learner: job resumed from its own checkpoints at policy v${r.policyVersion} (${r.modelName}); ${where}`
        : `learner: job started from ${r.initSource === "model_dir" ? `model_dir ${spec.modelDir}` : r.initSource} (${r.modelName}) at policy v${r.policyVersion}; ${where}`,
    },
  });
}
