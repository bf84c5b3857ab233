// A job's run clock: the seconds its steps have run, over api restarts. Recorded at each step's
// start, so an api that takes the job over goes on from there: its `max_minutes` budget and its LR
// decay's progress (coordinator/lr-decay.ts) count the whole run, not only this api's share.
import type { Redis } from "ioredis";

/** The run seconds at the start of the job's latest step (a plain string key). */
export const runSecondsKey = (jobId: string) => `rlmesh:job:${jobId}:run_seconds`;
/** Kept as long as the job's other per-step records (curriculum visits, step LRs, traces). */
const RUN_SECONDS_TTL_S = 14 * 24 * 3600;

export async function recordRunSeconds(redis: Redis, jobId: string, seconds: number): Promise<void> {
  await redis.set(runSecondsKey(jobId), String(seconds), "EX", RUN_SECONDS_TTL_S);
}

/** Run seconds already spent before this api took the job over (0 for a new job). */
export async function recordedRunSeconds(redis: Redis, jobId: string): Promise<number> {
  return Number((await redis.get(runSecondsKey(jobId))) ?? 0);
}
