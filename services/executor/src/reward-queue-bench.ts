import { UsageError, parseFlags, positiveInt } from "./cli-args.js";
import { type LoadReport, runRewardQueueLoad } from "./reward-queue-load.js";
import { MAX_REWARD_BATCH } from "@rlmesh/shared/reward/reward-jobs";

export const BENCH_REWARD_QUEUE_USAGE =
  "usage: rlmesh bench reward-queue [--jobs 20000] [--executors 4] [--concurrency 2] [--step 1000] [--steps-in-flight 2] [--batch 1] [--kill-every-ms 3000] [--no-redis-restart] [--json]";

/** The report as text lines. */
export function formatLoadReport(r: LoadReport): string[] {
  const p = (x: { p50: number; p99: number; max: number }) => `p50 ${x.p50} ms, p99 ${x.p99} ms, max ${x.max} ms`;
  return [
    `${r.jobs} reward jobs${r.batch > 1 ? ` in ${r.queue_jobs} batch jobs of up to ${r.batch}` : ""}, ${r.executors} executors × ${r.concurrency} sandboxes, steps of ${r.step_size}: ${r.seconds} s, ${r.jobs_per_s} jobs/s`,
    `enqueue → result at the waiter: ${p(r.latency_ms)}`,
    `  queue wait (timestamp → processedOn): ${p(r.queue_wait_ms)}`,
    `  execution (processedOn → finishedOn): ${p(r.execution_ms)}`,
    `  notification (finishedOn → waiter): ${p(r.notify_ms)}`,
    `faults: ${r.executor_kills} executor SIGKILLs (${r.executor_starts} starts), ${r.redis_restarts} Redis SIGKILL+restart (AOF); ${r.redone_jobs} jobs started twice or more, ${r.stalled_jobs} recovered as stalled (${r.stalled_jobs_per_kill} per kill; ${r.stall_events} stall events, ${r.forgiven_stalls} of them forgiven as held, at most ${r.max_stall_events} for one job, highest stalled counter left ${r.max_stalled_count}), ${r.step_retries} step retries`,
    `outcomes: ${JSON.stringify(r.outcomes)}; lost ${r.lost}, double-counted ${r.double_counted}, wrong rewards ${r.wrong_rewards}, waiter/Redis mismatches ${r.result_mismatch}`,
    `evidence: executor counter = 1 for ${r.recorded_once} (${r.recorded_uncounted} completed with the increment lost to a SIGKILL), one completed event for ${r.completed_events_once}; settled by event ${r.settled_by_event}, by read-back ${r.settled_by_probe}`,
  ];
}

/**
 * `rlmesh bench reward-queue`: the reward path under load with faults (reward-queue-load.ts).
 * Exit code 0 only when every job completed exactly once (1 otherwise; 2 for bad usage).
 */
export async function benchRewardQueueCommand(argv: string[], out: (l: string) => void = (l) => process.stdout.write(l + "\n")): Promise<number> {
  let flags: ReturnType<typeof parseFlags>;
  let o: { jobs: number; executors: number; concurrency: number; step: number; inFlight: number; batch: number; killEvery: number };
  try {
    flags = parseFlags(argv, {
      values: ["jobs", "executors", "concurrency", "step", "steps-in-flight", "batch", "kill-every-ms"],
      switches: ["json", "help", "no-redis-restart"],
    });
    if (flags.switches.has("help")) {
      out(BENCH_REWARD_QUEUE_USAGE);
      return 0;
    }
    const killRaw = flags.values.get("kill-every-ms");
    const killEvery = killRaw === undefined ? 3000 : Number(killRaw);
    if (!Number.isInteger(killEvery) || killEvery < 0) throw new UsageError(`--kill-every-ms must be an integer >= 0 (0: no kills), got ${JSON.stringify(killRaw)}`);
    o = {
      jobs: positiveInt("jobs", flags.values.get("jobs"), 20_000),
      executors: positiveInt("executors", flags.values.get("executors"), 4),
      concurrency: positiveInt("concurrency", flags.values.get("concurrency"), 2),
      step: positiveInt("step", flags.values.get("step"), 1000),
      inFlight: positiveInt("steps-in-flight", flags.values.get("steps-in-flight"), 2),
      batch: positiveInt("batch", flags.values.get("batch"), 1, MAX_REWARD_BATCH),
      killEvery,
    };
  } catch (err) {
    process.stderr.write(`rlmesh bench reward-queue: ${(err as Error).message}\n${BENCH_REWARD_QUEUE_USAGE}\n`);
    return 2;
  }
  const r = await runRewardQueueLoad({
    jobs: o.jobs,
    executors: o.executors,
    concurrency: o.concurrency,
    stepSize: o.step,
    stepsInFlight: o.inFlight,
    batch: o.batch,
    killEveryMs: o.killEvery,
    redisRestartAt: flags.switches.has("no-redis-restart") ? null : 0.4,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  if (flags.switches.has("json")) out(JSON.stringify(r));
  else for (const l of formatLoadReport(r)) out(l);
  const exact = r.lost === 0 && r.double_counted === 0 && r.wrong_rewards === 0 && r.result_mismatch === 0 && (r.batch > 1 ? r.outcomes.batch : r.outcomes.completed) === r.queue_jobs;
  return exact ? 0 : 1;
}
