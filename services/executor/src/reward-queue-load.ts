import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { type LocalRedis, createRedis, startLocalRedis } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { type RewardJobData, checkRewardBatchSize, planRewardJobs } from "@rlmesh/shared/reward/reward-jobs";
import { type JobOutcome, RewardWaiter, isNotEnqueued, parseRewardResult } from "@rlmesh/shared/reward/reward-waiter";
import { FORGIVEN_FIELD } from "./reward-worker.js";

/**
 * The reward path under load, on loopback, with faults: a private redis-server with AOF, N real
 * executor processes (load-executor-main.js: startExecutor + two evidence counters), a producer
 * that enqueues steps of reward jobs and waits on them with one RewardWaiter (as the api's
 * QueueRewardScorer does), one executor SIGKILLed and restarted every few seconds, Redis
 * SIGKILLed and restarted once. Every job's fate is then read back from four independent
 * sources: the waiter's outcome, an independent QueueEvents counting `completed` events per id,
 * the executors' per-job counters, and the job hashes and completed set in Redis.
 */
export interface LoadOptions {
  jobs: number;
  /** @defaultValue 4 */
  executors?: number;
  /** Candidates at once (and warm sandboxes) per executor. @defaultValue 2 */
  concurrency?: number;
  /** Jobs per step (one enqueue + one wait, like a coordinator step). @defaultValue 1000 */
  stepSize?: number;
  /** Steps enqueued and awaited at once. @defaultValue 2 */
  stepsInFlight?: number;
  /**
   * Candidates per BullMQ job: 1 = one job each; more = batch jobs of up to this many (as the
   * api with RLMESH_REWARD_BATCH). The exactly-once evidence is then per batch job; rewards are
   * still checked per candidate. @defaultValue 1
   */
  batch?: number;
  /** SIGKILL one executor (round robin) and start a new one this often; 0: never. @defaultValue 3000 */
  killEveryMs?: number;
  /** SIGKILL Redis and restart it (AOF) once this fraction of jobs has settled; null: never. @defaultValue 0.4 */
  redisRestartAt?: number | null;
  /** How long Redis stays down. @defaultValue 1000 */
  redisDownMs?: number;
  /** Executors' BullMQ lock duration and stalled-check interval (how fast a killed executor's jobs come back). @defaultValue 4000 / 2000 */
  lockMs?: number;
  stalledIntervalMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
}

export interface LoadReport {
  /** Candidates (reward jobs when batch is 1). */
  jobs: number;
  /** Candidates per BullMQ job. */
  batch: number;
  /** BullMQ jobs (= jobs when batch is 1): lost, double_counted, the evidence counts and the stall counts are per BullMQ job; wrong_rewards per candidate. */
  queue_jobs: number;
  executors: number;
  concurrency: number;
  step_size: number;
  seconds: number;
  jobs_per_s: number;
  /** Enqueue (the step's addBulk) to the result at the waiter, ms. */
  latency_ms: Percentiles;
  /** From Redis: job timestamp to processedOn of its final attempt (queue wait), ms. */
  queue_wait_ms: Percentiles;
  /** From Redis: processedOn to finishedOn of the final attempt (executor time), ms. */
  execution_ms: Percentiles;
  /** From finishedOn in Redis to the result at the waiter (event delivery, or the sweep's read-back), ms. */
  notify_ms: Percentiles;
  outcomes: Partial<Record<JobOutcome["state"], number>>;
  /** Jobs without a completed outcome at the waiter or not in the completed set in Redis. */
  lost: number;
  /** Jobs some evidence says were recorded more than once (executor counter, completed events, or a second settle). */
  double_counted: number;
  /** Jobs with exactly one `recorded` entry (one per executor process and take that saw its completion accepted). */
  recorded_once: number;
  /** Completed jobs with no `recorded` count: their executor was SIGKILLed between BullMQ accepting the result and the increment. */
  recorded_uncounted: number;
  /** Jobs whose independent QueueEvents saw exactly one `completed` event. */
  completed_events_once: number;
  /** Jobs whose reward differs from the candidate's known answer. */
  wrong_rewards: number;
  /** Jobs whose result at the waiter differs from the return value stored in Redis. */
  result_mismatch: number;
  /** Jobs started more than once (the executor died, or its lock expired, mid-job) and still counted once. */
  redone_jobs: number;
  /** Jobs BullMQ recovered as stalled at least once (job hash `stc + rlmesh_forgiven` > 0). */
  stalled_jobs: number;
  /**
   * Stall events over all jobs: BullMQ's counter `stc` plus the stalls the held-job stall policy
   * took off it (`rlmesh_forgiven`), so the raw count, not what the policy left.
   */
  stall_events: number;
  /** Of stall_events, how many the held-job stall policy took off the counters (sum of `rlmesh_forgiven`). */
  forgiven_stalls: number;
  /** The most stall events of any one job (`stc + rlmesh_forgiven`). */
  max_stall_events: number;
  /**
   * The highest stalled counter of any job as the policy left it (`stc`; BullMQ fails a job past
   * maxStalledCount). The policy rewrites it, so it is no evidence of how often jobs stalled.
   */
  max_stalled_count: number;
  /** stalled_jobs / executor_kills (2 decimals; 0 without kills). */
  stalled_jobs_per_kill: number;
  executor_kills: number;
  executor_starts: number;
  redis_restarts: number;
  step_retries: number;
  settled_by_event: number;
  settled_by_probe: number;
}

const ADD_TESTS = { kind: "assert" as const, tests: ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"] };
const RIGHT = "```python\ndef add(a, b):\n    return a + b\n```\n";
const WRONG = "```python\ndef add(a, b):\n    return a - b\n```\n";
const EXECUTOR_MAIN = resolve(REPO_ROOT, "services/executor/dist/load-executor-main.js");
const READY_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 15 * 60_000;
const STEP_TRIES = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { p50: Math.round(at(0.5)), p99: Math.round(at(0.99)), max: Math.round(s.at(-1)!) };
}

/** The executor processes: spawn, wait until ready, kill, replace. */
class ExecutorFleet {
  private readonly slots: (ChildProcess | undefined)[];
  private readonly ready = new Set<ChildProcess>();
  starts = 0;
  kills = 0;
  private next = 0;
  private stopping = false;

  constructor(
    private readonly n: number,
    private readonly env: NodeJS.ProcessEnv,
    private readonly logDir: string,
    private readonly log: (l: string) => void,
  ) {
    this.slots = Array.from({ length: n }, () => undefined);
  }

  async startAll(): Promise<void> {
    await Promise.all(this.slots.map((_, i) => this.start(i)));
  }

  /** Starts slot i's executor and resolves once it consumes the queue. */
  start(i: number): Promise<void> {
    this.starts++;
    const logPath = join(this.logDir, `executor-${i}-${this.starts}.log`);
    const out = createWriteStream(logPath);
    const child = spawn(process.execPath, [EXECUTOR_MAIN], { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    this.slots[i] = child;
    return new Promise((resolveReady, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`executor ${i} not ready in ${READY_TIMEOUT_MS} ms; log ${logPath}`)), READY_TIMEOUT_MS);
      child.stderr.on("data", (d: Buffer) => {
        out.write(d);
        if (this.ready.has(child)) return;
        seen = (seen + d.toString()).slice(-4096);
        if (seen.includes('"executor ready"')) {
          this.ready.add(child);
          clearTimeout(timer);
          resolveReady();
        }
      });
      child.once("exit", (code, signal) => {
        out.end();
        this.ready.delete(child);
        clearTimeout(timer);
        if (signal !== "SIGKILL" && !this.stopping) {
          this.log(`executor ${i} exited unexpectedly (${code ?? signal}); log ${logPath}: ${readFileSync(logPath, "utf8").slice(-500)}`);
          reject(new Error(`executor ${i} exited with ${code ?? signal}`));
          if (this.slots[i] === child) void this.start(i).catch(() => undefined);
        }
      });
    });
  }

  /** SIGKILLs the next ready executor and starts its replacement (not awaited). */
  async killOne(): Promise<void> {
    for (let tries = 0; tries < this.n; tries++) {
      const i = this.next++ % this.n;
      const child = this.slots[i];
      if (!child || !this.ready.has(child)) continue;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
      this.kills++;
      void this.start(i).catch((err: Error) => this.log(`restart of executor ${i} failed: ${err.message}`));
      return;
    }
  }

  /** SIGTERM every executor (in-flight jobs finish) and waits for them to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(
        (c) =>
          new Promise<void>((r) => {
            if (!c || c.exitCode !== null || c.signalCode !== null) return r();
            const t = setTimeout(() => c.kill("SIGKILL"), 20_000);
            c.once("exit", () => (clearTimeout(t), r()));
            c.kill("SIGTERM");
          }),
      ),
    );
  }
}

/** Runs the load test; stops everything it started. Needs redis-server, dockerd and the sandbox image. */
export async function runRewardQueueLoad(opts: LoadOptions): Promise<LoadReport> {
  const log = opts.log ?? (() => undefined);
  const nExec = opts.executors ?? 4;
  const concurrency = opts.concurrency ?? 2;
  const stepSize = opts.stepSize ?? 1000;
  const inFlight = opts.stepsInFlight ?? 2;
  const batch = checkRewardBatchSize(opts.batch ?? 1, "batch");
  const killEvery = opts.killEveryMs ?? 3000;
  const restartAt = opts.redisRestartAt === undefined ? 0.4 : opts.redisRestartAt;
  const queueName = `reward-load-${randomBytes(3).toString("hex")}`;
  const counters = `rlmesh:load:${queueName}`;
  const runId = `load${randomBytes(3).toString("hex")}`;
  const logDir = mkdtempSync(join(tmpdir(), "rlmesh-load-"));
  const redis: LocalRedis = await startLocalRedis({ appendOnly: true });
  const connections: Redis[] = [];
  const conn = (role: "client" | "worker") => {
    const c = createRedis(redis.url, { role });
    connections.push(c);
    return c;
  };
  const fleet = new ExecutorFleet(
    nExec,
    {
      ...process.env,
      REDIS_URL: redis.url,
      RLMESH_REWARD_QUEUE: queueName,
      RLMESH_EXECUTOR_CONCURRENCY: String(concurrency),
      RLMESH_EXECUTOR_METRICS_PORT: "0",
      RLMESH_EXECUTOR_LOCK_MS: String(opts.lockMs ?? 4000),
      RLMESH_EXECUTOR_STALLED_INTERVAL_MS: String(opts.stalledIntervalMs ?? 2000),
      RLMESH_LOAD_COUNTERS: counters,
    },
    logDir,
    log,
  );
  let queue: Queue | undefined;
  let events: QueueEvents | undefined;
  let audit: QueueEvents | undefined;
  let waiter: RewardWaiter | undefined;
  let killer: NodeJS.Timeout | undefined;
  let progress: NodeJS.Timeout | undefined;
  let restartTicker: NodeJS.Timeout | undefined;
  let ok = false;
  try {
    queue = new Queue(queueName, { connection: conn("client") });
    events = new QueueEvents(queueName, { connection: conn("worker") });
    audit = new QueueEvents(queueName, { connection: conn("worker") });
    // Connection errors while Redis restarts are expected; the clients reconnect.
    queue.on("error", () => undefined);
    for (const e of [events, audit]) e.on("error", () => undefined);
    await Promise.all([events.waitUntilReady(), audit.waitUntilReady()]);
    const completedEvents = new Map<string, number>();
    audit.on("completed", (e) => completedEvents.set(e.jobId, (completedEvents.get(e.jobId) ?? 0) + 1));

    await fleet.startAll();
    log(`${nExec} executors ready (concurrency ${concurrency}); ${opts.jobs} jobs in steps of ${stepSize}, ${inFlight} at once`);

    const enqueuedAt = new Map<string, number>();
    const settled = new Map<string, { at: number; wall: number; outcome: JobOutcome; times: number }>();
    // BullMQ job id -> its candidates' sample indices (one each without batches).
    const samplesOf = new Map<string, number[]>();
    waiter = new RewardWaiter(queue, events, {
      onSettled: (id, outcome) => {
        // A step whose enqueue failed (Redis restarting) has its ids settled as "not enqueued" and
        // is retried with the same ids: that is no result, and the retry's settle is the first.
        if (isNotEnqueued(outcome)) return;
        const prev = settled.get(id);
        settled.set(id, { at: performance.now(), wall: Date.now(), outcome, times: (prev?.times ?? 0) + 1 });
      },
    });
    let redisRestarts = 0;
    let restarting: Promise<void> | undefined;
    const maybeRestartRedis = () => {
      if (restartAt === null || redisRestarts > 0 || restarting || settled.size < restartAt * queueJobs) return;
      restarting = (async () => {
        log(`SIGKILL redis-server at ${settled.size} settled jobs; restarting in ${opts.redisDownMs ?? 1000} ms (AOF)`);
        await redis.kill();
        await sleep(opts.redisDownMs ?? 1000);
        await redis.restart();
        redisRestarts++;
        log("redis-server back");
      })();
    };

    const started = performance.now();
    if (killEvery > 0) {
      killer = setInterval(() => void fleet.killOne().catch((err: Error) => log(`kill failed: ${err.message}`)), killEvery);
    }
    progress = setInterval(() => {
      maybeRestartRedis();
      const s = (performance.now() - started) / 1000;
      log(`${settled.size}/${queueJobs} settled in ${s.toFixed(0)} s (${(settled.size / s).toFixed(1)} jobs/s), kills ${fleet.kills}, pending ${waiter!.pendingCount}`);
    }, 5000);
    restartTicker = setInterval(maybeRestartRedis, 100);

    let stepRetries = 0;
    const steps = Math.ceil(opts.jobs / stepSize);
    const queueJobs = Array.from({ length: steps }, (_, k) => Math.ceil((Math.min(opts.jobs, (k + 1) * stepSize) - k * stepSize) / batch)).reduce((a, b) => a + b, 0);
    let nextStep = 0;
    const q = queue;
    const w = waiter;
    const runStep = async (step: number) => {
      const data: RewardJobData[] = [];
      for (let i = step * stepSize; i < Math.min(opts.jobs, (step + 1) * stepSize); i++) {
        data.push({ job_id: runId, step, sample_index: i, problem_id: `add-${i}`, response: i % 2 === 0 ? RIGHT : WRONG, tests: ADD_TESTS });
      }
      const plan = planRewardJobs(data, batch);
      const ids = plan.ids;
      ids.forEach((id, k) => samplesOf.set(id, plan.candidates[k]!.map((c) => c.sample_index)));
      for (let attempt = 1; ; attempt++) {
        const t = performance.now();
        for (const id of ids) if (!enqueuedAt.has(id)) enqueuedAt.set(id, t);
        try {
          // As a coordinator's retried step: the same idempotent ids, so nothing is added twice.
          await w.waitForJobs(ids, STEP_TIMEOUT_MS, () => plan.enqueue(q));
          return;
        } catch (err) {
          if (attempt >= STEP_TRIES) throw err;
          stepRetries++;
          log(`step ${step} enqueue failed (${(err as Error).message}); retrying`);
          await sleep(1000);
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(inFlight, steps) }, async () => {
        while (nextStep < steps) await runStep(nextStep++);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    clearInterval(progress);
    clearInterval(restartTicker);
    if (killer) clearInterval(killer);
    await restarting;
    log(`all ${opts.jobs} settled in ${seconds.toFixed(1)} s; collecting evidence`);
    // Late duplicates (a second completion, a second counter increment) get time to show up.
    await sleep(3 * (opts.stalledIntervalMs ?? 2000) + 1000);

    // Evidence from Redis: job hashes, the completed set, the executors' counters.
    const client = (await queue.client) as unknown as Redis;
    // One field `<id>\t<pid>:<processedOn>` per completion an executor saw accepted.
    const recorded: Record<string, number> = {};
    for (const field of Object.keys(await client.hgetall(`${counters}:recorded`))) {
      const id = field.split("\t")[0]!;
      recorded[id] = (recorded[id] ?? 0) + 1;
    }
    const startedCount = await client.hgetall(`${counters}:started`);
    const ids = [...enqueuedAt.keys()];
    const stored = new Map<string, { timestamp: number; processedOn: number; finishedOn: number; returnvalue: string | null; stalled: number; forgiven: number; inCompleted: boolean }>();
    for (let i = 0; i < ids.length; i += 1000) {
      const batch = ids.slice(i, i + 1000);
      const pipe = client.pipeline();
      for (const id of batch) {
        pipe.hmget(queue.toKey(id), "timestamp", "processedOn", "finishedOn", "returnvalue", "stc", FORGIVEN_FIELD);
        pipe.zscore(queue.toKey("completed"), id);
      }
      const replies = (await pipe.exec()) ?? [];
      batch.forEach((id, j) => {
        const [ts, processedOn, finishedOn, rv, stc, forgiven] = (replies[2 * j]?.[1] ?? []) as (string | null)[];
        stored.set(id, {
          timestamp: Number(ts),
          processedOn: Number(processedOn),
          finishedOn: Number(finishedOn),
          returnvalue: rv ?? null,
          stalled: Number(stc ?? 0),
          forgiven: Number(forgiven ?? 0),
          inCompleted: replies[2 * j + 1]?.[1] !== null,
        });
      });
    }

    const outcomes: LoadReport["outcomes"] = {};
    let lost = 0;
    let double = 0;
    let once = 0;
    let uncounted = 0;
    let eventsOnce = 0;
    let wrong = 0;
    let mismatch = 0;
    let redone = 0;
    let stalledJobs = 0;
    let maxStalled = 0;
    let stallEvents = 0;
    let forgivenStalls = 0;
    let maxStallEvents = 0;
    const latencies: number[] = [];
    const waits: number[] = [];
    const execs: number[] = [];
    const notifies: number[] = [];
    ids.forEach((id) => {
      const s = settled.get(id);
      const st = stored.get(id);
      const state = s?.outcome.state ?? "timeout";
      outcomes[state] = (outcomes[state] ?? 0) + 1;
      const rec = Number(recorded[id] ?? 0);
      const ev = completedEvents.get(id) ?? 0;
      if ((state !== "completed" && state !== "batch") || !st?.inCompleted) lost++;
      if (rec > 1 || ev > 1 || (s?.times ?? 0) > 1) double++;
      if (rec === 1) once++;
      if (rec === 0 && st?.inCompleted) uncounted++;
      if (ev === 1) eventsOnce++;
      if (Number(startedCount[id] ?? 0) > 1) redone++;
      const events = (st?.stalled ?? 0) + (st?.forgiven ?? 0);
      if (events > 0) stalledJobs++;
      stallEvents += events;
      forgivenStalls += st?.forgiven ?? 0;
      maxStallEvents = Math.max(maxStallEvents, events);
      maxStalled = Math.max(maxStalled, st?.stalled ?? 0);
      if (s && (s.outcome.state === "completed" || s.outcome.state === "batch")) {
        const results = s.outcome.state === "batch" ? s.outcome.results : [s.outcome.result];
        const samples = samplesOf.get(id) ?? [];
        if (results.length !== samples.length) wrong += samples.length;
        else wrong += results.filter((r, k) => r.reward !== (samples[k]! % 2 === 0 ? 1 : 0)).length;
        const fromRedis = st?.returnvalue ? (batch > 1 ? (JSON.parse(st.returnvalue) as unknown[]).map(parseRewardResult) : parseRewardResult(st.returnvalue)) : undefined;
        if (JSON.stringify(fromRedis) !== JSON.stringify(batch > 1 ? results : results[0])) mismatch++;
        latencies.push(s.at - enqueuedAt.get(id)!);
      }
      if (st && st.processedOn > 0) waits.push(st.processedOn - st.timestamp);
      if (st && st.finishedOn > 0 && st.processedOn > 0) execs.push(st.finishedOn - st.processedOn);
      if (st && st.finishedOn > 0 && s) notifies.push(Math.max(0, s.wall - st.finishedOn));
    });
    ok = true;
    return {
      jobs: opts.jobs,
      batch,
      queue_jobs: ids.length,
      executors: nExec,
      concurrency,
      step_size: stepSize,
      seconds: Math.round(seconds * 10) / 10,
      jobs_per_s: Math.round((opts.jobs / seconds) * 10) / 10,
      latency_ms: percentiles(latencies),
      queue_wait_ms: percentiles(waits),
      execution_ms: percentiles(execs),
      notify_ms: percentiles(notifies),
      outcomes,
      lost,
      double_counted: double,
      recorded_once: once,
      recorded_uncounted: uncounted,
      completed_events_once: eventsOnce,
      wrong_rewards: wrong,
      result_mismatch: mismatch,
      redone_jobs: redone,
      stalled_jobs: stalledJobs,
      stall_events: stallEvents,
      forgiven_stalls: forgivenStalls,
      max_stall_events: maxStallEvents,
      max_stalled_count: maxStalled,
      stalled_jobs_per_kill: fleet.kills > 0 ? Math.round((stalledJobs / fleet.kills) * 100) / 100 : 0,
      executor_kills: fleet.kills,
      executor_starts: fleet.starts,
      redis_restarts: redisRestarts,
      step_retries: stepRetries,
      settled_by_event: waiter.stats.byEvent,
      settled_by_probe: waiter.stats.byProbe,
    };
  } finally {
    for (const t of [killer, progress, restartTicker]) if (t) clearInterval(t);
    waiter?.close();
    await fleet.stop();
    await audit?.close();
    await events?.close();
    await queue?.close();
    await Promise.allSettled(connections.map((c) => c.quit()));
    await redis.stop();
    if (ok) rmSync(logDir, { recursive: true, force: true });
    else log(`executor logs kept in ${logDir}`);
  }
}
