import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type LocalRedis, type Logger, createRedis, startLocalRedis } from "@rlmesh/shared";
import { type CanonicalRow, type DatasetFormat, loadDataset } from "@rlmesh/shared/datasets/index";
import { asResponse } from "./code-block.js";
import { type RunningExecutor, startExecutor } from "./executor.js";
import { DEFAULT_REWARD_QUEUE } from "@rlmesh/shared/reward/queue-names";
import type { RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { type InfraFailure, type RewardResult, type RewardStatus, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { type RewardOutcome, RewardWaiter, outcomeInfraFailure } from "@rlmesh/shared/reward/reward-waiter";
import { type PassAtKReport, type TaskCounts, passAtKOverTasks } from "./pass-at-k.js";
import type { SandboxLimits } from "./sandbox-limits.js";

/** Longest an eval waits for one candidate's result before recording a sandbox_error. */
export const EVAL_RESULT_TIMEOUT_MS = 10 * 60_000;
/** The ks `rlmesh eval` reports by default (human-eval's). */
export const DEFAULT_KS = [1, 10, 100];
/** Unmatched task ids named in an error or warning. */
const IDS_NAMED = 5;

/** One sample of a samples file: a raw model response, or a completion of the task's prompt. */
export interface EvalSample {
  task_id: string;
  /** `response`: the program is the response's last fenced code block. `completion` (human-eval's samples.jsonl): the program is the prompt plus the completion for a HumanEval row (its prompt is code), the completion alone otherwise. */
  kind: "response" | "completion";
  text: string;
  /** 1-based line in the samples file, when read from one. */
  line?: number;
}

export interface EvalOptions {
  /** JSONL dataset file, or rows already loaded. */
  dataset: string | CanonicalRow[];
  /** @defaultValue "auto" */
  format?: DatasetFormat;
  /** "canonical" (each row's reference wrapped in a code block) or a samples JSONL path: {task_id, response} or {task_id, completion}, any number per task. @defaultValue "canonical" */
  solutions?: string;
  /** One response per task id, given directly (overrides `solutions`). */
  responses?: Map<string, string>;
  /** Samples given directly, any number per task (overrides `solutions` and `responses`). */
  samples?: EvalSample[];
  /** pass@k for these k (reported where every answered task has n >= k). @defaultValue [1, 10, 100] */
  ks?: number[];
  /** Executor concurrency (in-process executor only). @defaultValue 2 */
  concurrency?: number;
  /**
   * Candidates per reward job: 1 is one BullMQ job each; more go as batch jobs (one fetch, lock
   * and completion per batch; an executor scores a batch on its own sandboxes). @defaultValue 1
   */
  batchSize?: number;
  /** Redis to use; without it a private redis-server is started and stopped. @defaultValue process.env.REDIS_URL */
  redisUrl?: string;
  /** @defaultValue "reward" with a private Redis, else "reward" too (the real queue) */
  queueName?: string;
  /** Start an in-process executor even if others consume the queue. @defaultValue only when none does */
  inProcessExecutor?: boolean;
  limits?: Partial<SandboxLimits>;
  logger?: Logger;
  /** Called right before the first candidate is enqueued (the timed part starts; benches read CPU counters here). */
  onTimedStart?: () => void;
}

/** The result of one sample; `sample` numbers a task's samples from 0 in file order. */
export interface EvalRowResult {
  task_id: string;
  sample: number;
  /** Line of the samples file, when read from one. */
  line?: number;
  result: RewardResult;
  /**
   * True when the infrastructure could not score the sample (its reward job failed for good:
   * sandbox_error, executor_lost, ...). Such a sample is left out of every count and of pass@k,
   * never scored 0; `result` then says why (status and reason).
   */
  unscored?: InfraFailure;
}

export interface EvalSummary {
  /** Samples scored. */
  total: number;
  passed: number;
  failed: number;
  by_status: Partial<Record<RewardStatus, number>>;
  /** From enqueueing the first candidate to the last result (executor warm-up excluded). */
  seconds: number;
  executions_per_second: number;
  /** Tasks in the dataset. */
  tasks: number;
  /** Fewest and most samples of an answered task. */
  samples_per_task: { min: number; max: number };
  /** Dataset tasks without a sample (0 for every pass@k). */
  unanswered_tasks: number;
  /** Samples whose task id is not in the dataset (not scored). */
  unmatched_samples: number;
  /** Samples the infrastructure could not score (left out of total, passed and pass@k). */
  unscored_samples: number;
  /** unscored_samples by infrastructure failure (sandbox_error, executor_lost, ...). */
  unscored_by_status: Partial<Record<InfraFailure, number>>;
  /** pass@k as a fraction, keyed by k, over every dataset task except those whose every sample went unscored (infrastructure failure; see unscored_samples). */
  pass_at_k: Record<string, number>;
  /** The requested ks not reported, and why. */
  pass_at_k_skipped: { k: number; reason: string }[];
}

export interface EvalReport {
  summary: EvalSummary;
  /** One per sample, grouped by dataset row order, then sample order. */
  rows: EvalRowResult[];
  /** What the caller should say out loud (unmatched ids, unanswered tasks). */
  warnings: string[];
}

/** Thrown when an eval cannot start (bad samples file, no reference solution, no matching task id, ...). */
export class EvalError extends Error {
  override name = "EvalError";
}

/**
 * Loads a samples JSONL file: one object a line with `task_id` (string or number) and either
 * `response` (a raw model output) or `completion` (human-eval's samples.jsonl convention). Any
 * number of lines per task id, none dropped. Errors name the line and field.
 */
export function loadSamples(path: string): EvalSample[] {
  const out: EvalSample[] = [];
  readFileSync(path, "utf8")
    .split("\n")
    .forEach((src, i) => {
      if (src.trim() === "") return;
      const line = i + 1;
      let row: unknown;
      try {
        row = JSON.parse(src);
      } catch (err) {
        throw new EvalError(`${path}:${line}: invalid JSON: ${(err as Error).message}`);
      }
      if (typeof row !== "object" || row === null || Array.isArray(row)) throw new EvalError(`${path}:${line}: expected a JSON object`);
      const o = row as Record<string, unknown>;
      const id = typeof o.task_id === "number" ? String(o.task_id) : o.task_id;
      if (typeof id !== "string") throw new EvalError(`${path}:${line}: field "task_id": expected a string or number`);
      const hasResponse = "response" in o;
      const hasCompletion = "completion" in o;
      if (hasResponse && hasCompletion) throw new EvalError(`${path}:${line}: has both "response" and "completion"; give one`);
      if (!hasResponse && !hasCompletion) throw new EvalError(`${path}:${line}: field "response" (or "completion"): missing`);
      const field = hasResponse ? "response" : "completion";
      if (typeof o[field] !== "string") throw new EvalError(`${path}:${line}: field "${field}": expected a string`);
      out.push({ task_id: id, kind: field, text: o[field], line });
    });
  return out;
}

/** A program as a response with one fenced block, the fence longer than any backtick run inside. */
function fenceProgram(program: string): string {
  const longest = Math.max(0, ...(program.match(/`+/g) ?? []).map((r) => r.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}python\n${program.replace(/\s+$/, "")}\n${fence}\n`;
}

/** What the executor is given for a sample of `row`. */
export function sampleResponse(row: CanonicalRow, s: EvalSample): string {
  if (s.kind === "response") return s.text;
  return fenceProgram(row.source === "humaneval" ? row.prompt + s.text : s.text);
}

function samplesFor(rows: CanonicalRow[], opts: EvalOptions): EvalSample[] {
  if (opts.samples) return opts.samples;
  if (opts.responses) return [...opts.responses].map(([task_id, text]) => ({ task_id, kind: "response", text }));
  const solutions = opts.solutions ?? "canonical";
  if (solutions !== "canonical") return loadSamples(solutions);
  return rows.map((row) => {
    if (row.reference === undefined) throw new EvalError(`task ${row.task_id} has no reference solution; pass --solutions RESPONSES.jsonl`);
    return { task_id: row.task_id, kind: "response", text: asResponse(row.reference) };
  });
}

const named = (ids: string[]) =>
  ids
    .slice(0, IDS_NAMED)
    .map((id) => JSON.stringify(id))
    .join(", ") + (ids.length > IDS_NAMED ? `, … (${ids.length} in all)` : "");

/** The candidates of an eval: each sample matched to its row. */
export interface EvalPlan {
  /** Dataset order, then sample order within a task. */
  candidates: { row: CanonicalRow; sample: number; line?: number; response: string }[];
  counts: Map<string, number>;
  unmatched: EvalSample[];
  warnings: string[];
}

/**
 * Matches samples to dataset rows (pure). Throws an EvalError when samples were given and none
 * names a dataset task (a wrong file, or ids in another form: "HumanEval/0" vs 0); warns, with
 * counts and example ids, when only some do, and when tasks have no sample.
 */
export function planEval(rows: CanonicalRow[], samples: EvalSample[]): EvalPlan {
  const byTask = new Map<string, EvalSample[]>();
  const known = new Set(rows.map((r) => r.task_id));
  const unmatched: EvalSample[] = [];
  for (const s of samples) {
    if (!known.has(s.task_id)) {
      unmatched.push(s);
      continue;
    }
    const list = byTask.get(s.task_id);
    if (list) list.push(s);
    else byTask.set(s.task_id, [s]);
  }
  const unmatchedIds = [...new Set(unmatched.map((s) => s.task_id))];
  if (samples.length > 0 && byTask.size === 0) {
    throw new EvalError(
      `none of the ${samples.length} sample(s) names a task of the dataset (${rows.length} task(s)): ` +
        `sample task ids ${named(unmatchedIds)}; dataset task ids ${named(rows.map((r) => r.task_id))}`,
    );
  }
  if (samples.length === 0 && rows.length > 0) throw new EvalError("no samples to score (the samples file is empty)");
  const warnings: string[] = [];
  if (unmatched.length > 0) {
    warnings.push(
      `${unmatched.length} of ${samples.length} sample(s) name a task id the dataset does not have (${unmatchedIds.length} distinct: ${named(unmatchedIds)}); they are not scored`,
    );
  }
  const unanswered = rows.filter((r) => !byTask.has(r.task_id)).map((r) => r.task_id);
  if (unanswered.length > 0) {
    warnings.push(`${unanswered.length} of ${rows.length} task(s) have no sample (${named(unanswered)}); each counts as 0 in pass@k`);
  }
  const counts = new Map<string, number>();
  const candidates: EvalPlan["candidates"] = [];
  for (const row of rows) {
    const list = byTask.get(row.task_id) ?? [];
    counts.set(row.task_id, list.length);
    list.forEach((s, sample) => candidates.push({ row, sample, ...(s.line !== undefined ? { line: s.line } : {}), response: sampleResponse(row, s) }));
  }
  return { candidates, counts, unmatched, warnings };
}

/** Summary of results (pure). `tasks` gives every dataset task's n and c for pass@k. */
export function summarize(
  results: RewardResult[],
  seconds: number,
  tasks: TaskCounts[] = [],
  ks: number[] = [1],
  unmatched = 0,
  unscored: InfraFailure[] = [],
): EvalSummary {
  const by: Partial<Record<RewardStatus, number>> = {};
  for (const r of results) by[r.status] = (by[r.status] ?? 0) + 1;
  const unscoredBy: Partial<Record<InfraFailure, number>> = {};
  for (const k of unscored) unscoredBy[k] = (unscoredBy[k] ?? 0) + 1;
  const passed = results.filter((r) => r.reward === 1).length;
  const answered = tasks.filter((t) => t.n > 0);
  const pk: PassAtKReport = passAtKOverTasks(tasks, ks);
  return {
    total: results.length,
    passed,
    failed: results.length - passed,
    by_status: by,
    seconds: Math.round(seconds * 1000) / 1000,
    executions_per_second: seconds > 0 ? Math.round((results.length / seconds) * 100) / 100 : 0,
    tasks: tasks.length,
    samples_per_task: {
      min: answered.length ? Math.min(...answered.map((t) => t.n)) : 0,
      max: answered.length ? Math.max(...answered.map((t) => t.n)) : 0,
    },
    unanswered_tasks: tasks.length - answered.length,
    unmatched_samples: unmatched,
    unscored_samples: unscored.length,
    unscored_by_status: unscoredBy,
    pass_at_k: pk.pass_at_k,
    pass_at_k_skipped: pk.skipped,
  };
}

/** Writes one JSON line per sample: task_id, sample index, reward, status and the details. */
export function writeResults(path: string, rows: EvalRowResult[]): void {
  writeFileSync(
    path,
    rows
      .map((r) =>
        JSON.stringify({
          task_id: r.task_id,
          sample: r.sample,
          ...(r.line !== undefined ? { line: r.line } : {}),
          reward: r.unscored ? null : r.result.reward,
          ...(r.unscored ? { unscored: r.unscored } : {}),
          status: r.result.status,
          tests_passed: r.result.tests_passed,
          tests_total: r.result.tests_total,
          duration_ms: r.result.duration_ms,
          reason: r.result.reason,
        }),
      )
      .join("\n") + (rows.length ? "\n" : ""),
  );
}

/**
 * Scores every sample through the real path: BullMQ queue -> executor worker -> Docker sandbox.
 * Starts a private Redis when no URL is given and an in-process executor when none consumes
 * the queue; stops what it started.
 */
export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const rows = typeof opts.dataset === "string" ? loadDataset(opts.dataset, opts.format ?? "auto") : opts.dataset;
  const plan = planEval(rows, samplesFor(rows, opts));
  for (const w of plan.warnings) opts.logger?.warn(w);
  const redisUrlGiven = opts.redisUrl ?? process.env.REDIS_URL;
  let localRedis: LocalRedis | undefined;
  let executor: RunningExecutor | undefined;
  let queue: Queue | undefined;
  let events: QueueEvents | undefined;
  let waiter: RewardWaiter | undefined;
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
    const jobs: RewardJobData[] = plan.candidates.map((c, i) => ({
      job_id: runId,
      step: 0,
      sample_index: i,
      problem_id: c.row.task_id,
      response: c.response,
      tests: c.row.tests,
      ...(opts.limits ? { limits: opts.limits } : {}),
    }));
    waiter = new RewardWaiter(queue, events, opts.logger ? { logger: opts.logger } : {});
    opts.onTimedStart?.();
    const started = process.hrtime.bigint();
    const outcomes = await waiter.waitForCandidates(jobs, opts.batchSize ?? 1, EVAL_RESULT_TIMEOUT_MS);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const results = outcomes.map(outcomeResult);
    // As in an RL step: a failed job, no result in time, or a spent sandbox recorded as a
    // sandbox_error result are "no reward" — never a 0.
    const kinds = outcomes.map(outcomeInfraFailure);
    const isScored = kinds.map((k) => k === null);
    const passes = new Map<string, number>();
    const scoredCounts = new Map<string, number>();
    plan.candidates.forEach((c, i) => {
      if (!isScored[i]) return;
      passes.set(c.row.task_id, (passes.get(c.row.task_id) ?? 0) + results[i]!.reward);
      scoredCounts.set(c.row.task_id, (scoredCounts.get(c.row.task_id) ?? 0) + 1);
    });
    // A task whose every sample went unscored is left out of pass@k (not a 0); one without any
    // sample in the file still counts 0 (unanswered).
    const tasks = rows
      .filter((r) => !((plan.counts.get(r.task_id) ?? 0) > 0 && !scoredCounts.has(r.task_id)))
      .map((r) => ({ task_id: r.task_id, n: scoredCounts.get(r.task_id) ?? 0, c: passes.get(r.task_id) ?? 0 }));
    const unscored = kinds.filter((k): k is InfraFailure => k !== null);
    const warnings = [...plan.warnings];
    if (unscored.length > 0) warnings.push(unscoredWarning(plan.candidates.length, plan.candidates.flatMap((c, i) => (isScored[i] ? [] : [{ id: `${c.row.task_id}#${c.sample}`, kind: kinds[i]!, result: results[i]! }]))));
    return {
      summary: summarize(
        results.filter((_, i) => isScored[i]),
        seconds,
        tasks,
        opts.ks ?? DEFAULT_KS,
        plan.unmatched.length,
        unscored,
      ),
      rows: plan.candidates.map((c, i) => ({
        task_id: c.row.task_id,
        sample: c.sample,
        ...(c.line !== undefined ? { line: c.line } : {}),
        result: results[i]!,
        ...(kinds[i] ? { unscored: kinds[i] } : {}),
      })),
      warnings,
    };
  } finally {
    waiter?.close();
    await executor?.close();
    await events?.close();
    await queue?.close();
    await Promise.allSettled(connections.map((c) => c.quit()));
    await localRedis?.stop();
  }
}

/**
 * A reward job that did not complete: the infrastructure failed, so the sample is unscored (see
 * infraKind); the result records the reason and is never counted as 0.
 */
function outcomeResult(o: RewardOutcome): RewardResult {
  if (o.state === "completed") return o.result;
  return rewardResult({ status: "sandbox_error", tests_run: 0, tests_passed: 0, tests_total: 0, duration_ms: 0, reason: `${o.state}: ${o.reason}` });
}

/** The warning for samples the infrastructure could not score (named, up to IDS_NAMED). */
export function unscoredWarning(total: number, unscored: { id: string; kind: InfraFailure; result: RewardResult }[]): string {
  const by = new Map<string, number>();
  for (const u of unscored) by.set(u.kind, (by.get(u.kind) ?? 0) + 1);
  const counts = [...by].map(([k, v]) => `${k} ×${v}`).join(", ");
  const named = unscored.slice(0, IDS_NAMED).map((u) => `${u.id} (${u.result.reason.slice(0, 120)})`);
  const more = unscored.length > IDS_NAMED ? `; … ${unscored.length - IDS_NAMED} more` : "";
  return (
    `${unscored.length} of ${total} sample(s) could not be scored — the sandbox infrastructure failed on every attempt [${counts}]; ` +
    `they are left out of the counts and of pass@k, not scored 0: ${named.join("; ")}${more}`
  );
}
