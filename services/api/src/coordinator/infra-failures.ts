// Samples the infrastructure could not score: dropped from their group (never reward 0),
// counted, told in the job's events, and a job fails when too many of a step's candidates are.
import { DEFAULT_REWARD_ATTEMPTS } from "@rlmesh/shared/reward/reward-jobs";
import type { InfraFailure } from "@rlmesh/shared/reward/reward-result";
import type { Candidate, Score } from "./interfaces.js";

/** Default of RLMESH_MAX_INFRA_FAILURE_RATE: a step (or eval) with more candidates than this unscored fails the job. */
export const DEFAULT_MAX_INFRA_FAILURE_RATE = 0.1;

/** One candidate without a reward. */
export interface DroppedSample {
  sampleIndex: number;
  taskId: string;
  status: InfraFailure;
  reason: string;
}

/** Thrown when a step's (or an eval's) infrastructure-failure rate passes the limit: the job fails, naming it. */
export class InfraFailureRateError extends Error {
  override name = "InfraFailureRateError";
}

/** The candidates whose score is "no reward", in candidate order. */
export function droppedSamples(candidates: Candidate[], scores: Score[]): DroppedSample[] {
  return candidates.flatMap((c, k) => {
    const s = scores[k]!;
    return s.reward === null ? [{ sampleIndex: c.sampleIndex, taskId: c.row.task_id, status: s.status, reason: s.reason }] : [];
  });
}

/** "sandbox_error ×3, executor_lost ×1" */
export function countByStatus(dropped: DroppedSample[]): string {
  const n = new Map<string, number>();
  for (const d of dropped) n.set(d.status, (n.get(d.status) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k} ×${v}`).join(", ");
}

/** The job event that names every dropped sample (index, task, failure, reason). */
export function describeDropped(what: string, dropped: DroppedSample[], total: number): string {
  const detail = (d: DroppedSample) => d.reason.replace(/^(sandbox_error|executor_lost|infra_timeout|invalid_job):\s*/, "").slice(0, 160);
  const list = dropped.map((d) => `#${d.sampleIndex} ${d.taskId} (${d.status}: ${detail(d)})`).join("; ");
  return (
    `${what}: dropped ${dropped.length} of ${total} sample(s) with no reward — the sandbox infrastructure failed ` +
    `on every attempt (up to ${DEFAULT_REWARD_ATTEMPTS}), so they are left out of their groups, not scored 0 [${countByStatus(dropped)}]: ${list}`
  );
}

/** Throws InfraFailureRateError when more than `maxRate` of `total` candidates were dropped. */
export function checkInfraFailureRate(what: string, dropped: DroppedSample[], total: number, maxRate: number): void {
  if (dropped.length === 0 || total === 0) return;
  const rate = dropped.length / total;
  if (rate <= maxRate) return;
  const pct = (x: number) => `${(100 * x).toFixed(1).replace(/\.0$/, "")} %`;
  throw new InfraFailureRateError(
    `${what}: infrastructure-failure rate ${pct(rate)} (${dropped.length} of ${total} candidates got no reward: ${countByStatus(dropped)}) ` +
      `is above the limit of ${pct(maxRate)} (RLMESH_MAX_INFRA_FAILURE_RATE); dropped samples: ${dropped.map((d) => `#${d.sampleIndex}`).join(", ")}`,
  );
}
