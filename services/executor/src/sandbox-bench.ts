import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import { checkRewardBatchSize } from "@rlmesh/shared/reward/reward-jobs";
import { asResponse } from "./code-block.js";
import { BwrapSandbox } from "./bwrap-sandbox.js";
import { DockerSandbox } from "./docker-sandbox.js";
import { runEval } from "./run-eval.js";
import { type SandboxBackendName, openSandboxBackend } from "./sandbox-backend.js";
import { SandboxPool } from "./sandbox-pool.js";
import { DEFAULT_PREFETCH, startExecutor } from "./executor.js";
import { startLocalRedis } from "@rlmesh/shared";
import type { SandboxRequest } from "./sandbox-protocol.js";
import { DEFAULT_CONTAINER_LIMITS, DEFAULT_SANDBOX_LIMITS } from "./sandbox-limits.js";
import { scoreCandidate } from "./score-candidate.js";

/**
 * Limits of every path in the bench: generous, so that a slow reference (MBPP 123 needs ~3 s
 * of CPU per test) on a busy machine measures throughput rather than a timeout.
 */
export const BENCH_LIMITS = { ...DEFAULT_SANDBOX_LIMITS, timeout_ms_per_test: 60_000, total_timeout_ms: 120_000 };

/** One backend's numbers in a bench run. */
export interface BackendBench {
  /** Through the real path: queue -> executor -> warm pool -> fork server (the first prefetch setting measured). */
  executor_per_s: number;
  executor_passed: number;
  ratio_vs_bare: number;
  /** The executor path at each prefetch setting measured (same rounds). */
  executors: ExecutorBench[];
  /** The warm pool called directly (no queue, no Redis): what the sandboxes alone sustain. */
  pool_per_s: number;
  pool_passed: number;
  pool_ratio_vs_bare: number;
  /** CPU per candidate of this process while it drives the pool directly, ms (compare ExecutorBench.node_cpu_ms_per_candidate). */
  pool_node_cpu_ms_per_candidate: number;
  /** Mean time a sandbox sat idle before each candidate when the pool is driven directly, ms. */
  pool_sandbox_idle_ms_per_candidate: number;
  /** One sandbox, one request at a time: mean ms per candidate seen by the executor ... */
  sequential_ms_per_candidate: number;
  /** ... of which inside the judge (fork server's duration_ms: program load + tests) ... */
  judge_ms_per_candidate: number;
  /** ... and the rest: frame I/O, the supervisor's kill/reap/wipe, PID 1 reaping it and forking the next supervisor + candidate + judge. */
  overhead_ms_per_candidate: number;
  /** Start-up of one sandbox (create -> fork server ready), ms. */
  start_ms: number;
  /**
   * CPU time per candidate in the sequential profile: every process of the sandbox (bwrap: the
   * sum of its roles, live supervisor and judge included; docker: the container's cgroup, dockerd
   * not counted) plus this process. Unlike the rates, hardly moved by other load on the machine.
   * 0 when unreadable.
   */
  sequential_cpu_ms_per_candidate: number;
  /** The sequential profile's sandbox CPU per candidate by process role (undefined when /proc could not be read). */
  sequential_cpu_roles_ms: RoleCpu | undefined;
  /**
   * Minor page faults per candidate by process role, same profile: mostly copy-on-write copies
   * after a fork (a page first written by either side), so they count work that the CPU times,
   * at 10 ms clock ticks and with the machine's noise, show only on average.
   */
  sequential_faults_roles: RoleCpu | undefined;
  /** ... and this process's (the executor side: frames, scoring) per candidate, ms. */
  sequential_node_cpu_ms_per_candidate: number;
  /** bare_sequential_cpu_ms_per_candidate / sequential_cpu_ms_per_candidate (0 when unknown). */
  cpu_ratio_vs_bare: number;
}

export interface SandboxBenchResult {
  /** The Docker backend's executor rate (kept flat for scripts; also under backends.docker). */
  executor_per_s: number;
  bare_subprocess_per_s: number;
  /** Sequential bare python3 per candidate, ms (interpreter start-up + the tests). */
  bare_sequential_ms_per_candidate: number;
  /** CPU time of the same sequential bare runs per candidate: python3 (reaped children) + this process. */
  bare_sequential_cpu_ms_per_candidate: number;
  cold_docker_run_per_s: number;
  ratio_vs_bare: number;
  ratio_vs_cold: number;
  /** Rows per pass; every rate is over `rounds` passes. */
  candidates: number;
  rounds: number;
  cold_sample: number;
  concurrency: number;
  executor_passed: number;
  bare_passed: number;
  cold_passed: number;
  backends: Partial<Record<SandboxBackendName, BackendBench>>;
  /** Load average (1 min) when the run started and ended: the numbers are wall-clock rates. */
  loadavg: [number, number];
  cpus: number;
}

/** Python used for the unsandboxed baseline (the system one; pyenv shims add start-up time). */
export function benchPython(): string {
  return existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

/** An assert-style row as one plain script: program, test imports/setup, tests. */
export function plainScript(row: CanonicalRow): string {
  if (row.tests.kind !== "assert" || row.reference === undefined)
    throw new Error(`row ${row.task_id} is not an assert-style row with a reference`);
  return [row.reference, row.tests.setup ?? "", ...row.tests.tests].join("\n") + "\n";
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

function runPython(script: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn(benchPython(), ["-"], { stdio: ["pipe", "ignore", "ignore"] });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (code) => {
      clearTimeout(t);
      resolve(code === 0);
    });
    p.stdin.end(script);
  });
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const round = (x: number) => Math.round(x * 100) / 100;

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

/** CPU seconds and minor page faults (most of them copy-on-write after a fork) of a process or role. */
interface Usage {
  cpu: number;
  faults: number;
}
const ZERO: Usage = { cpu: 0, faults: 0 };
const plus = (a: Usage, b: Usage): Usage => ({ cpu: a.cpu + b.cpu, faults: a.faults + b.faults });
const minus = (a: Usage, b: Usage): Usage => ({ cpu: a.cpu - b.cpu, faults: a.faults - b.faults });
/**
 * One read of /proc/<pid>/stat: the process's own CPU (utime+stime) and its reaped children's
 * (cutime+cstime), seconds, the same for minor page faults (minflt, cminflt), and its start time
 * (clock ticks after boot); undefined when unreadable.
 */
function procStat(pid: number | "self"): { own: Usage; reaped: Usage; start: number } | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return {
      own: { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, faults: Number(f[7]) },
      reaped: { cpu: (Number(f[13]) + Number(f[14])) / CLK_TCK, faults: Number(f[8]) },
      start: Number(f[19]),
    };
  } catch {
    return undefined;
  }
}

/** Reaped children's CPU of this process (cutime+cstime), seconds. */
const childrenCpuSeconds = (): number => procStat("self")!.reaped.cpu;

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Host pid of a sandbox's PID 1 (the fork server), or undefined. */
async function sandboxPid1(sandbox: unknown): Promise<number | undefined> {
  if (sandbox instanceof BwrapSandbox) return sandbox.pid1 || undefined;
  if (sandbox instanceof DockerSandbox) {
    try {
      const pid = (await sandbox.container.inspect()).State?.Pid;
      return typeof pid === "number" && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** CPU per candidate of each process role of a sandbox, ms (see RoleSampler). */
export interface RoleCpu {
  /** PID 1, the zygote: forks the candidate (and a judge every 64 runs), hands over the pipes, kills and reaps. */
  pid1: number;
  /** The persistent supervisor: reads the request, frames to the judge/candidate, the judging loop, wipes /tmp, answers. */
  supervisor: number;
  /** The judge process(es): test code, the stubs' calls to the candidate, per-run clean-up. */
  judge: number;
  /** The candidate processes (and anything they forked): start after the fork (page faults), load, answering calls, exit. */
  candidate: number;
}

type Roles = Record<keyof RoleCpu, Usage>;

/**
 * CPU time and page faults of a sandbox's processes by role, read from the host's /proc (both
 * backends' processes are host processes): PID 1's own; its live children (the supervisor, the
 * oldest; the judge, a child seen at two samples in a row; a pre-forked candidate, seen once);
 * what PID 1 reaped (cutime/cminflt: the candidates, and a judge when it is replaced, whose usage
 * up to its last sample is moved to the judge). Sampled after every candidate; a replaced judge's
 * last run counts as candidate usage (1 run in 64).
 */
class RoleSampler {
  private readonly seen = new Map<number, Usage & { samples: number }>();
  private readonly pid1Start: Usage;
  private readonly reapedStart: Usage;
  private supervisor?: number;
  private supervisorStart: Usage = ZERO;
  private judge: Usage = ZERO;
  private reapedJudges: Usage = ZERO;

  private constructor(private readonly pid1: number) {
    const st = procStat(pid1);
    this.pid1Start = st?.own ?? ZERO;
    this.reapedStart = st?.reaped ?? ZERO;
    this.sample(true);
  }

  static open(pid1: number | undefined): RoleSampler | undefined {
    return pid1 !== undefined && procStat(pid1) !== undefined ? new RoleSampler(pid1) : undefined;
  }

  private children(): number[] {
    try {
      return readFileSync(`/proc/${this.pid1}/task/${this.pid1}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** Reads every live child of PID 1; a child that was seen before and is gone was reaped. */
  sample(first = false): void {
    const now = new Map<number, { own: Usage; start: number }>();
    for (const pid of this.children()) {
      const st = procStat(pid);
      if (st) now.set(pid, st);
    }
    if (this.supervisor === undefined && now.size > 0) {
      // The first sample that sees PID 1's children (a sandbox reports ready before it forks them).
      let oldest: [number, number] | undefined;
      // Started first (the judge and a pre-forked candidate follow it, often within the same clock tick: then the lower pid).
      for (const [pid, st] of now) if (!oldest || st.start < oldest[1] || (st.start === oldest[1] && pid < oldest[0])) oldest = [pid, st.start];
      if (oldest) {
        this.supervisor = oldest[0];
        this.supervisorStart = now.get(oldest[0])!.own;
      }
    }
    for (const [pid, prev] of this.seen) {
      if (now.has(pid)) continue;
      // Reaped since the last sample: a judge (seen twice or more) goes from cutime to the judge.
      if (prev.samples >= 2) this.reapedJudges = plus(this.reapedJudges, prev);
      this.seen.delete(pid);
    }
    for (const [pid, st] of now) {
      if (pid === this.supervisor) continue;
      const prev = this.seen.get(pid);
      const usage = st.own;
      if (first) this.seen.set(pid, { ...usage, samples: 2 });
      else if (prev) {
        // The second sight of a judge: all its usage so far is the judge's.
        this.judge = plus(this.judge, prev.samples >= 2 ? minus(usage, prev) : usage);
        this.seen.set(pid, { ...usage, samples: prev.samples + 1 });
      } else this.seen.set(pid, { ...usage, samples: 1 });
    }
  }

  /** CPU seconds and page faults per role since open. */
  totals(): Roles {
    this.sample();
    const st = procStat(this.pid1);
    const pid1 = st ? minus(st.own, this.pid1Start) : ZERO;
    const reaped = st ? minus(st.reaped, this.reapedStart) : ZERO;
    const sup = this.supervisor !== undefined ? procStat(this.supervisor) : undefined;
    const supervisor = sup ? minus(sup.own, this.supervisorStart) : ZERO;
    const candidate = minus(reaped, this.reapedJudges);
    return { pid1, supervisor, judge: this.judge, candidate: { cpu: Math.max(0, candidate.cpu), faults: Math.max(0, candidate.faults) } };
  }
}

/**
 * CPU seconds a sandbox has used so far, or undefined: Docker, the container's cgroup (every
 * process in it); bwrap, undefined (its total is the sum of RoleSampler's roles, which also counts
 * the live supervisor and judge: PID 1's own and reaped children's time alone left them out).
 */
async function sandboxCpuSeconds(sandbox: unknown): Promise<number | undefined> {
  if (sandbox instanceof DockerSandbox) {
    try {
      const stats = (await new Docker().getContainer(sandbox.id).stats({ stream: false })) as { cpu_stats?: { cpu_usage?: { total_usage?: number } } };
      const ns = stats.cpu_stats?.cpu_usage?.total_usage;
      return typeof ns === "number" ? ns / 1e9 : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

type SequentialProfile = Pick<
  BackendBench,
  | "sequential_ms_per_candidate"
  | "judge_ms_per_candidate"
  | "overhead_ms_per_candidate"
  | "start_ms"
  | "sequential_cpu_ms_per_candidate"
  | "sequential_cpu_roles_ms"
  | "sequential_faults_roles"
  | "sequential_node_cpu_ms_per_candidate"
>;

/** One sandbox of a backend, one request at a time, on the first 200 rows: time and CPU per candidate. */
async function benchSequential(backend: SandboxBackendName, rows: CanonicalRow[]): Promise<SequentialProfile> {
  const limits = BENCH_LIMITS;
  const container = DEFAULT_CONTAINER_LIMITS;
  const b = await openSandboxBackend(backend, { owner: `bench-${process.pid}-${randomBytes(3).toString("hex")}`, limits: container });
  try {
    const t0 = process.hrtime.bigint();
    const one = await b.create();
    const startMs = ms(t0);
    let seqMs = 0;
    let judgeMs = 0;
    let cpuMs = 0;
    let roles: RoleCpu | undefined;
    let faults: RoleCpu | undefined;
    let nodeMs = 0;
    try {
      const sampler = RoleSampler.open(await sandboxPid1(one));
      let samplingCpu = 0;
      const sandboxCpu0 = await sandboxCpuSeconds(one);
      const selfCpu0 = selfCpuSeconds();
      // The first 200 rows (a single slow row would otherwise dominate).
      for (const row of rows.slice(0, 200)) {
        const t = process.hrtime.bigint();
        // The fork server's own duration_ms (program load + tests, timed inside the sandbox).
        const recording = {
          run: async (req: SandboxRequest, watchdogMs: number) => {
            const resp = await one.run(req, watchdogMs);
            judgeMs += resp.duration_ms;
            return resp;
          },
        };
        await scoreCandidate(recording, { response: asResponse(row.reference ?? ""), tests: row.tests }, { limits, container });
        seqMs += ms(t);
        if (sampler) {
          const c = selfCpuSeconds();
          sampler.sample();
          samplingCpu += selfCpuSeconds() - c; // the bench's own /proc reading is not the executor's
        }
      }
      const selfCpu = selfCpuSeconds() - selfCpu0 - samplingCpu;
      const n = Math.min(rows.length, 200);
      nodeMs = (selfCpu * 1000) / n;
      const sandboxCpu1 = await sandboxCpuSeconds(one);
      const r = sampler?.totals();
      if (r) {
        const per = (f: (u: Usage) => number, scale: number): RoleCpu => ({
          pid1: round((f(r.pid1) * scale) / n),
          supervisor: round((f(r.supervisor) * scale) / n),
          judge: round((f(r.judge) * scale) / n),
          candidate: round((f(r.candidate) * scale) / n),
        });
        roles = per((u) => u.cpu, 1000);
        faults = per((u) => u.faults, 1);
      }
      if (sandboxCpu0 !== undefined && sandboxCpu1 !== undefined) cpuMs = (sandboxCpu1 - sandboxCpu0 + selfCpu) * 1000;
      else if (r) cpuMs = (r.pid1.cpu + r.supervisor.cpu + r.judge.cpu + r.candidate.cpu + selfCpu) * 1000;
    } finally {
      await one.destroy();
    }
    const n = Math.min(rows.length, 200);
    return {
      sequential_ms_per_candidate: round(seqMs / n),
      judge_ms_per_candidate: round(judgeMs / n),
      overhead_ms_per_candidate: round((seqMs - judgeMs) / n),
      start_ms: round(startMs),
      sequential_cpu_ms_per_candidate: round(cpuMs / n),
      sequential_cpu_roles_ms: roles,
      sequential_faults_roles: faults,
      sequential_node_cpu_ms_per_candidate: round(nodeMs),
    };
  } finally {
    await b.close();
  }
}

/** A warm pool of `concurrency` sandboxes called directly (no queue): one pass over the rows, warm-up excluded. */
async function benchPoolRate(
  backend: SandboxBackendName,
  rows: CanonicalRow[],
  concurrency: number,
): Promise<{ seconds: number; passed: number; nodeCpu: number; idleMs: number }> {
  const limits = BENCH_LIMITS;
  const container = DEFAULT_CONTAINER_LIMITS;
  const b = await openSandboxBackend(backend, { owner: `bench-${process.pid}-${randomBytes(3).toString("hex")}`, limits: container });
  try {
    const pool = new SandboxPool({ size: concurrency, create: () => b.create() });
    await pool.start();
    try {
      pool.resetStats();
      const t1 = process.hrtime.bigint();
      const cpu0 = selfCpuSeconds();
      const rewards = await mapLimit(rows, concurrency, async (row) =>
        (await scoreCandidate(pool, { response: asResponse(row.reference ?? ""), tests: row.tests }, { limits, container })).reward,
      );
      return { seconds: seconds(t1), passed: rewards.filter((r) => r === 1).length, nodeCpu: selfCpuSeconds() - cpu0, idleMs: pool.stats.idleWaitMs };
    } finally {
      await pool.close();
    }
  } finally {
    await b.close();
  }
}

/** The executor path at one prefetch setting, summed over the rounds. */
export interface ExecutorBench {
  prefetch: number;
  /** Candidates per reward job (1: one job each; more: batch jobs). */
  batch: number;
  per_s: number;
  passed: number;
  ratio_vs_bare: number;
  /** CPU per candidate of this process (producer + executor) and of the redis-server, ms. */
  node_cpu_ms_per_candidate: number;
  redis_cpu_ms_per_candidate: number;
  /** Mean time a sandbox sat idle before each candidate (waiting for the executor to hand it a job; includes the wait for the first jobs while they are enqueued), ms. */
  sandbox_idle_ms_per_candidate: number;
}

export interface SandboxBenchOptions {
  concurrency: number;
  coldSample: number;
  backends?: SandboxBackendName[];
  /** Executor prefetch values (jobs held per sandbox, ExecutorOptions.prefetch) measured, each through the queue in every round; the first is the headline. @defaultValue [DEFAULT_PREFETCH] */
  prefetch?: number[];
  /** Candidates per reward job measured (each with each prefetch value); the first is the headline. @defaultValue [1] */
  batch?: number[];
  /**
   * Passes over the rows. Every round runs each path once (bare, then per backend each executor
   * setting and the pool, the order rotated each round), so a change of the machine's load falls
   * on every path alike; rates are total candidates over total seconds. @defaultValue 1
   */
  rounds?: number;
}

/**
 * Executions per second, same rows and concurrency, for each backend: the executor (queue ->
 * warm pool -> fork server; pool warm-up excluded) at each prefetch setting and the warm pool
 * alone; a bare `python3` per candidate (no isolation at all); and, with Docker, a cold container
 * per candidate (create + start + run + remove, what `docker run --rm` does).
 */
export async function benchSandbox(rows: CanonicalRow[], opts: SandboxBenchOptions): Promise<SandboxBenchResult> {
  const limits = BENCH_LIMITS;
  const backends = opts.backends ?? (["docker", "bwrap"] as SandboxBackendName[]);
  const prefetches = opts.prefetch ?? [DEFAULT_PREFETCH];
  const batches = opts.batch ?? [1];
  const rounds = opts.rounds ?? 1;
  if (prefetches.length === 0 || prefetches.some((p) => !Number.isInteger(p) || p < 0)) throw new Error(`prefetch: integers >= 0, got ${prefetches.join(",")}`);
  if (batches.length === 0) throw new Error("batch: at least one batch size");
  for (const b of batches) checkRewardBatchSize(b, "batch");
  // Batch sizes outermost: the headline (first) setting is the first batch size at the first prefetch.
  const settings = batches.flatMap((batch) => prefetches.map((prefetch) => ({ prefetch, batch })));
  const settingKey = (backend: string, x: { prefetch: number; batch: number }) => `${backend}:executor:${x.prefetch}:${x.batch}`;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`rounds: a positive integer, got ${rounds}`);
  const load0 = loadavg()[0]!;
  // One Redis for every executor pass, so its CPU per candidate can be read.
  const redis = await startLocalRedis();
  try {
    // Each path is a function run once per round; sums of seconds and passes per path.
    type Pass = { seconds: number; passed: number; nodeCpu: number; redisCpu: number; idleMs: number };
    type Path = { key: string; run: () => Promise<Pass> };
    const redisCpu = () => procStat(redis.process.pid!)?.own.cpu ?? 0;
    const paths: Path[] = [
      {
        key: "bare",
        run: async () => {
          const t = process.hrtime.bigint();
          const ok = await mapLimit(rows, opts.concurrency, (row) => runPython(plainScript(row), limits.total_timeout_ms));
          return { seconds: seconds(t), passed: ok.filter(Boolean).length, nodeCpu: 0, redisCpu: 0, idleMs: 0 };
        },
      },
    ];
    for (const backend of backends) {
      for (const setting of settings) {
        const { prefetch, batch } = setting;
        paths.push({
          key: settingKey(backend, setting),
          run: async () => {
            // The executor as a service runs it (startExecutor), on its own queue; runEval then
            // finds it consuming and only produces and waits, as the coordinator does.
            const queueName = `bench-${randomBytes(3).toString("hex")}`;
            const executor = await startExecutor({ redisUrl: redis.url, queueName, concurrency: opts.concurrency, prefetch, backend });
            let node0 = 0;
            let redis0 = 0;
            try {
              const eval_ = await runEval({
                dataset: rows,
                solutions: "canonical",
                limits,
                redisUrl: redis.url,
                queueName,
                batchSize: batch,
                inProcessExecutor: false,
                onTimedStart: () => {
                  executor.pool.resetStats();
                  node0 = selfCpuSeconds();
                  redis0 = redisCpu();
                },
              });
              return {
                seconds: eval_.summary.seconds,
                passed: eval_.summary.passed,
                nodeCpu: selfCpuSeconds() - node0,
                redisCpu: redisCpu() - redis0,
                idleMs: executor.pool.stats.idleWaitMs,
              };
            } finally {
              await executor.close();
            }
          },
        });
      }
      paths.push({
        key: `${backend}:pool`,
        run: async () => {
          return { ...(await benchPoolRate(backend, rows, opts.concurrency)), redisCpu: 0 };
        },
      });
    }
    const totals = new Map<string, Pass>();
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so no path always runs first (or last) in a round.
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const p of order) {
        const r = await p.run();
        const t = totals.get(p.key) ?? { seconds: 0, passed: 0, nodeCpu: 0, redisCpu: 0, idleMs: 0 };
        totals.set(p.key, {
          seconds: t.seconds + r.seconds,
          passed: t.passed + r.passed,
          nodeCpu: t.nodeCpu + r.nodeCpu,
          redisCpu: t.redisCpu + r.redisCpu,
          idleMs: t.idleMs + r.idleMs,
        });
      }
    }
    const n = rows.length * rounds;
    const rate = (key: string) => n / totals.get(key)!.seconds;
    const passedOf = (key: string) => Math.round(totals.get(key)!.passed / rounds);
    const barePerS = rate("bare");

    // Sequential profiles (not rounds): bare CPU per candidate, then each backend's.
    let bareSeqMs = 0;
    const seqRows = rows.slice(0, 200);
    const bareCpu0 = childrenCpuSeconds() + selfCpuSeconds();
    for (const row of seqRows) {
      const t = process.hrtime.bigint();
      await runPython(plainScript(row), limits.total_timeout_ms);
      bareSeqMs += ms(t);
    }
    const bareCpuMs = ((childrenCpuSeconds() + selfCpuSeconds() - bareCpu0) * 1000) / seqRows.length;

    const per: Partial<Record<SandboxBackendName, BackendBench>> = {};
    for (const backend of backends) {
      const profile = await benchSequential(backend, rows);
      const executors: ExecutorBench[] = settings.map((setting) => {
        const key = settingKey(backend, setting);
        const t = totals.get(key)!;
        return {
          ...setting,
          per_s: round(rate(key)),
          passed: passedOf(key),
          ratio_vs_bare: round(rate(key) / barePerS),
          node_cpu_ms_per_candidate: round((t.nodeCpu * 1000) / n),
          redis_cpu_ms_per_candidate: round((t.redisCpu * 1000) / n),
          sandbox_idle_ms_per_candidate: round(t.idleMs / n),
        };
      });
      const poolKey = `${backend}:pool`;
      per[backend] = {
        executor_per_s: executors[0]!.per_s,
        executor_passed: executors[0]!.passed,
        ratio_vs_bare: executors[0]!.ratio_vs_bare,
        executors,
        pool_per_s: round(rate(poolKey)),
        pool_passed: passedOf(poolKey),
        pool_ratio_vs_bare: round(rate(poolKey) / barePerS),
        pool_node_cpu_ms_per_candidate: round((totals.get(poolKey)!.nodeCpu * 1000) / n),
        pool_sandbox_idle_ms_per_candidate: round(totals.get(poolKey)!.idleMs / n),
        ...profile,
        cpu_ratio_vs_bare: profile.sequential_cpu_ms_per_candidate > 0 ? round(bareCpuMs / profile.sequential_cpu_ms_per_candidate) : 0,
      };
    }

    let coldPerS = 0;
    let cold: boolean[] = [];
    const sample = backends.includes("docker") ? rows.slice(0, opts.coldSample) : [];
    if (sample.length > 0) {
      const docker = new Docker();
      const owner = `bench-${process.pid}-${randomBytes(3).toString("hex")}`;
      const t1 = process.hrtime.bigint();
      cold = await mapLimit(sample, opts.concurrency, async (row) => {
        const sandbox = await DockerSandbox.start({ docker, owner, limits: DEFAULT_CONTAINER_LIMITS });
        try {
          const r = await scoreCandidate(
            sandbox,
            { response: asResponse(row.reference ?? ""), tests: row.tests },
            { limits, container: DEFAULT_CONTAINER_LIMITS },
          );
          return r.reward === 1;
        } finally {
          await sandbox.destroy();
        }
      });
      coldPerS = sample.length / seconds(t1);
    }
    const headline = per.docker ?? per[backends[0]!]!;
    return {
      executor_per_s: headline.executor_per_s,
      bare_subprocess_per_s: round(barePerS),
      bare_sequential_ms_per_candidate: round(bareSeqMs / seqRows.length),
      bare_sequential_cpu_ms_per_candidate: round(bareCpuMs),
      cold_docker_run_per_s: round(coldPerS),
      ratio_vs_bare: headline.ratio_vs_bare,
      ratio_vs_cold: coldPerS > 0 ? round(headline.executor_per_s / coldPerS) : 0,
      candidates: rows.length,
      rounds,
      cold_sample: sample.length,
      concurrency: opts.concurrency,
      executor_passed: headline.executor_passed,
      bare_passed: passedOf("bare"),
      cold_passed: cold.filter(Boolean).length,
      backends: per,
      loadavg: [round(load0), round(loadavg()[0]!)],
      cpus: cpus().length,
    };
  } finally {
    await redis.stop();
  }
}
