import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type LocalRedis, type Logger, createRedis, startLocalRedis } from "@rlmesh/shared";
import { type CanonicalRow, type DatasetFormat, loadDataset } from "@rlmesh/shared/datasets/index";
import { asResponse } from "./code-block.js";
import { type RunningExecutor, startExecutor } from "./executor.js";
import { DEFAULT_REWARD_QUEUE } from "@rlmesh/shared/reward/queue-names";
import { type RewardJobData, enqueueRewardJobs, rewardJobId } from "@rlmesh/shared/reward/reward-jobs";
import { REWARD_STATUSES, type RewardResult, type RewardStatus, rewardResult } from "@rlmesh/shared/reward/reward-result";
import type { SandboxLimits } from "./sandbox-limits.js";

/** Longest an eval waits for one candidate's result before recording a sandbox_error. */
export const EVAL_RESULT_TIMEOUT_MS = 10 * 60_000;

export interface EvalOptions {
  /** JSONL dataset file, or rows already loaded. */
  dataset: string | CanonicalRow[];
  /** @defaultValue "auto" */
  format?: DatasetFormat;
  /** "canonical" (each row's reference wrapped in a code block) or a RESPONSES.jsonl path of {task_id, response}. @defaultValue "canonical" */
  solutions?: string;
  /** Responses given directly, by task id (overrides `solutions`). */
  responses?: Map<string, string>;
  /** Executor concurrency (in-process executor only). @defaultValue 2 */
  concurrency?: number;
  /** Redis to use; without it a private redis-server is started and stopped. @defaultValue process.env.REDIS_URL */
  redisUrl?: string;
  /** @defaultValue "reward" with a private Redis, else "reward" too (the real queue) */
  queueName?: string;
  /** Start an in-process executor even if others consume the queue. @defaultValue only when none does */
  inProcessExecutor?: boolean;
  limits?: Partial<SandboxLimits>;
  logger?: Logger;
}

export interface EvalRowResult {
  task_id: string;
  result: RewardResult;
}

export interface EvalSummary {
  total: number;
  passed: number;
  failed: number;
  by_status: Partial<Record<RewardStatus, number>>;
  /** From enqueueing the first candidate to the last result (executor warm-up excluded). */
  seconds: number;
  executions_per_second: number;
}

export interface EvalReport {
  summary: EvalSummary;
  rows: EvalRowResult[];
}

/** Thrown when an eval cannot start (bad responses file, no reference solution, ...). */
export class EvalError extends Error {
  override name = "EvalError";
}

/** Loads RESPONSES.jsonl rows `{task_id, response}`; errors name the line and field. */
export function loadResponses(path: string): Map<string, string> {
  const out = new Map<string, string>();
  readFileSync(path, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.trim() === "") return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (err) {
        throw new EvalError(`${path}:${i + 1}: invalid JSON: ${(err as Error).message}`);
      }
      const o = row as Record<string, unknown>;
      const id = typeof o.task_id === "number" ? String(o.task_id) : o.task_id;
      if (typeof id !== "string") throw new EvalError(`${path}:${i + 1}: field "task_id": expected a string or number`);
      if (typeof o.response !== "string") throw new EvalError(`${path}:${i + 1}: field "response": expected a string`);
      out.set(id, o.response);
    });
  return out;
}

function responsesFor(rows: CanonicalRow[], opts: EvalOptions): Map<string, string> {
  if (opts.responses) return opts.responses;
  const solutions = opts.solutions ?? "canonical";
  if (solutions !== "canonical") return loadResponses(solutions);
  const out = new Map<string, string>();
  for (const row of rows) {
    if (row.reference === undefined) throw new EvalError(`task ${row.task_id} has no reference solution; pass --solutions RESPONSES.jsonl`);
    out.set(row.task_id, asResponse(row.reference));
  }
  return out;
}

/** Summary of results (pure). */
export function summarize(results: RewardResult[], seconds: number): EvalSummary {
  const by: Partial<Record<RewardStatus, number>> = {};
  for (const r of results) by[r.status] = (by[r.status] ?? 0) + 1;
  const passed = results.filter((r) => r.reward === 1).length;
  return {
    total: results.length,
    passed,
    failed: results.length - passed,
    by_status: by,
    seconds: Math.round(seconds * 1000) / 1000,
    executions_per_second: seconds > 0 ? Math.round((results.length / seconds) * 100) / 100 : 0,
  };
}

/**
 * Scores every row through the real path: BullMQ queue -> executor worker -> Docker sandbox.
 * Starts a private Redis when no URL is given and an in-process executor when none consumes
 * the queue; stops what it started.
 */
export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const rows = typeof opts.dataset === "string" ? loadDataset(opts.dataset, opts.format ?? "auto") : opts.dataset;
  const responses = responsesFor(rows, opts);
  const redisUrlGiven = opts.redisUrl ?? process.env.REDIS_URL;
  let localRedis: LocalRedis | undefined;
  let executor: RunningExecutor | undefined;
  let queue: Queue | undefined;
  let events: QueueEvents | undefined;
  const connections: Redis[] = [];
  try {
    if (!redisUrlGiven) localRedis = await startLocalRedis();
    const redisUrl = redisUrlGiven ?? localRedis!.url;
    const queueName = opts.queueName ?? DEFAULT_REWARD_QUEUE;
    for (const role of ["client", "worker"] as const) connections.push(createRedis(redisUrl, { role }));
    queue = new Queue(queueName, { connection: connections[0]! });
    events = new QueueEvents(queueName, { connection: connections[1]! });
    await events.waitUntilReady();
    const others = localRedis ? 0 : (await queue.getWorkers()).length;
    if (opts.inProcessExecutor ?? others === 0) {
      executor = await startExecutor({
        redisUrl,
        queueName,
        concurrency: opts.concurrency ?? 2,
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
    }
    const runId = `eval-${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
    const jobs: RewardJobData[] = rows.map((row, i) => ({
      job_id: runId,
      step: 0,
      sample_index: i,
      problem_id: row.task_id,
      response: responses.get(row.task_id) ?? "",
      tests: row.tests,
      ...(opts.limits ? { limits: opts.limits } : {}),
    }));
    const collector = new ResultCollector(events, queue);
    const started = process.hrtime.bigint();
    const waits = jobs.map((j) => collector.wait(rewardJobId(j.job_id, j.step, j.sample_index), EVAL_RESULT_TIMEOUT_MS));
    await enqueueRewardJobs(queue, jobs);
    const results = await Promise.all(waits);
    collector.close();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return {
      summary: summarize(results, seconds),
      rows: rows.map((row, i) => ({ task_id: row.task_id, result: results[i]! })),
    };
  } finally {
    await executor?.close();
    await events?.close();
    await queue?.close();
    await Promise.allSettled(connections.map((c) => c.quit()));
    await localRedis?.stop();
  }
}

/** Resolves each job's recorded result once it completes (a sandbox_error if it failed for good). */
class ResultCollector {
  private readonly pending = new Map<string, (r: RewardResult) => void>();
  private readonly onCompleted = (e: { jobId: string; returnvalue: unknown }) => {
    this.settle(e.jobId, parseResult(e.returnvalue) ?? failure("unreadable result"));
  };
  private readonly onFailed = (e: { jobId: string; failedReason: string }) => {
    if (!this.pending.has(e.jobId)) return;
    // A failed event may be followed by a retry; only a job that failed for good counts.
    void this.queue.getJobState(e.jobId).then((state) => {
      if (state === "failed") this.settle(e.jobId, failure(e.failedReason));
    });
  };

  constructor(
    private readonly events: QueueEvents,
    private readonly queue: Queue,
  ) {
    events.on("completed", this.onCompleted);
    events.on("failed", this.onFailed);
  }

  wait(jobId: string, timeoutMs: number): Promise<RewardResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(jobId, failure(`no result within ${timeoutMs} ms`)), timeoutMs);
      this.pending.set(jobId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  private settle(jobId: string, r: RewardResult): void {
    const resolve = this.pending.get(jobId);
    if (!resolve) return;
    this.pending.delete(jobId);
    resolve(r);
  }

  close(): void {
    this.events.off("completed", this.onCompleted);
    this.events.off("failed", this.onFailed);
  }
}

function failure(reason: string): RewardResult {
  return rewardResult({ status: "sandbox_error", tests_run: 0, tests_passed: 0, tests_total: 0, duration_ms: 0, reason });
}

function parseResult(v: unknown): RewardResult | undefined {
  const o = typeof v === "string" ? (JSON.parse(v) as unknown) : v;
  if (typeof o !== "object" || o === null) return undefined;
  const r = o as RewardResult;
  return (REWARD_STATUSES as readonly string[]).includes(r.status) ? r : undefined;
}
