// Learning-rate decay over a job's run (spec.lr_schedule), applied by the coordinator: each step's
// TrainStep carries grpo.lr × factor(progress of the run at the step's start). The learner's own
// warmup and its collapse guard's LR scale multiply that LR as they multiply a constant one.
import type { Redis } from "ioredis";
import { GRPO_DEFAULTS } from "@rlmesh/shared/grpo-defaults";
import type { NormalizedJobSpec as JobSpec, NormalizedLrSchedule } from "../job-spec.js";

/**
 * The schedule's factor at `progress` (fraction of the run, clamped to [0, 1]): 1 for "constant";
 * for "cosine" 1 until decayStart, then a half cosine from 1 down to minRatio at progress 1.
 */
export function lrDecayFactor(progress: number, s: NormalizedLrSchedule): number {
  if (!Number.isFinite(progress)) throw new RangeError(`progress must be a finite number, got ${progress}`);
  if (s.decay === "constant") return 1;
  const p = Math.min(1, Math.max(0, progress));
  if (p <= s.decayStart) return 1;
  const u = (p - s.decayStart) / (1 - s.decayStart);
  return s.minRatio + 0.5 * (1 - s.minRatio) * (1 + Math.cos(Math.PI * u));
}

/**
 * Progress of the run when step `step` (1-based) starts: the larger of the share of steps done,
 * (step − 1) / steps, and the share of the time budget spent, elapsedSeconds / (maxMinutes · 60)
 * when the job has one; at most 1.
 */
export function runProgress(step: number, elapsedSeconds: number, spec: Pick<JobSpec, "steps" | "maxMinutes">): number {
  const bySteps = spec.steps > 0 ? (step - 1) / spec.steps : 0;
  const byTime = spec.maxMinutes > 0 ? elapsedSeconds / (spec.maxMinutes * 60) : 0;
  return Math.min(1, Math.max(0, bySteps, byTime));
}

/** What a step's LR was made of, recorded before its TrainStep. */
export interface StepLr {
  /** The LR sent in the step's TrainStep (grpo.lr × factor). */
  lr: number;
  factor: number;
  progress: number;
  /** Run seconds (this job's steps, over api restarts) when the step started. */
  elapsedSeconds: number;
}

/** Each step's recorded LR (a hash: step → StepLr as JSON), so a retried or resumed step resends it. */
export const stepLrKey = (jobId: string) => `rlmesh:job:${jobId}:lr`;
/** How long a job's step LRs are kept after its last step (as its curriculum visits and traces). */
const STEP_LR_TTL_S = 14 * 24 * 3600;

/**
 * The LR of step `step`: the one recorded for it when an earlier attempt (or an api before a
 * restart) got that far, else grpo.lr × factor(progress now), recorded (HSETNX: the first record
 * wins). Null for a constant schedule (or none: a job stored before JobSpec.lr_schedule existed):
 * the spec's grpo params go to the learner unchanged.
 */
export async function stepLr(redis: Redis, jobId: string, step: number, spec: JobSpec, elapsedSeconds: number): Promise<StepLr | null> {
  const schedule = spec.lrSchedule as NormalizedLrSchedule | undefined;
  if (!schedule || schedule.decay === "constant") return null;
  const key = stepLrKey(jobId);
  const progress = runProgress(step, elapsedSeconds, spec);
  const factor = lrDecayFactor(progress, schedule);
  const fresh: StepLr = { lr: (spec.grpo.lr ?? GRPO_DEFAULTS.lr) * factor, factor, progress, elapsedSeconds };
  const created = await redis.hsetnx(key, String(step), JSON.stringify(fresh));
  await redis.expire(key, STEP_LR_TTL_S);
  if (created === 1) return fresh;
  return JSON.parse((await redis.hget(key, String(step)))!) as StepLr;
}
