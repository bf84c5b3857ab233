import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Job, JobEvent, JobEventIn, JobState } from "@rlmesh/shared";
import type { TracedSample__Output as TracedSample } from "@rlmesh/shared/gen/rlmesh/v1/TracedSample";
import type { NormalizedJobSpec } from "./job-spec.js";

/** Redis key prefix for job state. */
export const JOB_KEY_PREFIX = "rlmesh:job";
/** Sorted set of job ids by creation time. */
export const JOB_INDEX_KEY = "rlmesh:jobs";

/** Traced samples kept per job (the newest; older ones are trimmed). */
export const MAX_TRACES_KEPT = 200;
/** The most traced samples one step keeps (spec.trace_samples_per_step's bound). */
export const MAX_TRACES_PER_STEP = 64;
/**
 * How long a job's traces live after their last append when the job's own key has no expiry
 * (jobs are kept until deleted today); a job key with a TTL gives its traces the same TTL.
 */
export const TRACES_TTL_S = 14 * 24 * 3600;

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"]);

// Offsets are dense integers (0, 1, 2, ...). The event with offset n is stored in the stream under
// the id `n-1`, so a watcher resumes with XREAD from `<last>-1` and the offset/id mapping is exact.
const APPEND_EVENT = `
local n = redis.call('INCR', KEYS[1]) - 1
redis.call('XADD', KEYS[2], n .. '-1', 'e', ARGV[1])
return n`;

// A step's event and the job's progress in one step: the event is appended and the job record
// replaced only when the stored job has not reached that step yet (a retried or resumed step whose
// record went through — e.g. Redis died before the reply — is not recorded twice). Returns the
// event's offset, -1 when the step was already recorded, -2 when the job has ended meanwhile.
const RECORD_STEP = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, j = pcall(cjson.decode, cur)
  if ok and tonumber(j['step'] or 0) >= tonumber(ARGV[3]) then return -1 end
  -- A job that ended meanwhile (cancelled, failed) keeps its end: no step is recorded over it.
  if ok and (j['state'] == 'JOB_STATE_CANCELLED' or j['state'] == 'JOB_STATE_FAILED' or j['state'] == 'JOB_STATE_SUCCEEDED') then return -2 end
end
local n = redis.call('INCR', KEYS[2]) - 1
redis.call('XADD', KEYS[3], n .. '-1', 'e', ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return n`;

/** Job state and its append-only event log, kept in Redis so they survive an api restart. */
export class JobStore {
  constructor(private readonly redis: Redis) {}

  static newId(): string {
    return `job-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  }

  private key(id: string, part?: string): string {
    return part ? `${JOB_KEY_PREFIX}:${id}:${part}` : `${JOB_KEY_PREFIX}:${id}`;
  }

  /** Stores a validated spec (every optional field set: on the wire it is a JobSpec). */
  async create(spec: NormalizedJobSpec): Promise<Job> {
    const now = Date.now();
    const job: Job = {
      id: JobStore.newId(),
      spec,
      state: "JOB_STATE_QUEUED",
      step: 0,
      policyVersion: 0,
      rewardMean: 0,
      passRate: 0,
      evalPassAt1: 0,
      createdAtMs: now,
      updatedAtMs: now,
      error: "",
      eventCount: 0,
      jobRewardMean: 0,
      candidatesScored: 0,
    };
    await this.redis.multi().set(this.key(job.id), JSON.stringify(job)).zadd(JOB_INDEX_KEY, now, job.id).exec();
    await this.appendEvent(job.id, { state: { fromState: "JOB_STATE_UNSPECIFIED", to: "JOB_STATE_QUEUED", reason: "submitted" } });
    return { ...job, eventCount: 1 };
  }

  async get(id: string): Promise<Job | undefined> {
    const raw = await this.redis.get(this.key(id));
    if (!raw) return undefined;
    const job = JSON.parse(raw) as Job;
    job.eventCount = Number((await this.redis.get(this.key(id, "seq"))) ?? 0);
    return job;
  }

  async list(state: JobState | undefined, limit: number): Promise<Job[]> {
    const ids = await this.redis.zrevrange(JOB_INDEX_KEY, 0, -1);
    const jobs: Job[] = [];
    for (const id of ids) {
      const job = await this.get(id);
      if (job && (!state || state === "JOB_STATE_UNSPECIFIED" || job.state === state)) jobs.push(job);
      if (jobs.length >= limit) break;
    }
    return jobs;
  }

  /** Read-modify-write of one job's fields (a job has a single coordinator, so no lock). */
  async update(id: string, patch: Partial<Omit<Job, "id" | "spec" | "createdAtMs">>): Promise<Job> {
    const job = await this.get(id);
    if (!job) throw new Error(`job ${id} not found`);
    const next: Job = { ...job, ...patch, updatedAtMs: Date.now() };
    await this.redis.set(this.key(id), JSON.stringify(next));
    return next;
  }

  /** Moves the job to `to` and records the change as an event. No-op if already terminal. */
  async transition(id: string, to: JobState, reason: string, patch: Partial<Job> = {}): Promise<Job> {
    const job = await this.get(id);
    if (!job) throw new Error(`job ${id} not found`);
    if (TERMINAL_STATES.has(job.state)) return job;
    const next = await this.update(id, { ...patch, state: to });
    await this.appendEvent(id, { state: { fromState: job.state, to, reason } });
    return next;
  }

  /**
   * Records a completed step atomically: its step event and the job's progress (`patch`, whose
   * `step` is the step). A step the stored job has already reached is not recorded again, nor one
   * of a job that ended meanwhile (a cancel between the step's start and its record); the stored
   * job is returned then.
   */
  async recordStep(
    id: string,
    event: Omit<JobEventIn, "offset" | "timeMs" | "jobId">,
    patch: Partial<Omit<Job, "id" | "spec" | "createdAtMs">> & { step: number },
  ): Promise<{ job: Job; recorded: boolean }> {
    const job = await this.get(id);
    if (!job) throw new Error(`job ${id} not found`);
    if (Number(job.step) >= patch.step || TERMINAL_STATES.has(job.state)) return { job, recorded: false };
    const next: Job = { ...job, ...patch, updatedAtMs: Date.now() };
    const full: JobEventIn = { ...event, jobId: id, timeMs: Date.now() };
    const n = (await this.redis.eval(
      RECORD_STEP,
      3,
      this.key(id),
      this.key(id, "seq"),
      this.key(id, "events"),
      JSON.stringify(full),
      JSON.stringify(next),
      String(patch.step),
    )) as number;
    if (n < 0) return { job: (await this.get(id)) ?? job, recorded: false };
    return { job: next, recorded: true };
  }

  /** Appends an event (offset and time are assigned here); returns its offset. */
  async appendEvent(id: string, event: Omit<JobEventIn, "offset" | "timeMs" | "jobId">): Promise<number> {
    const full: JobEventIn = { ...event, jobId: id, timeMs: Date.now() };
    const n = (await this.redis.eval(APPEND_EVENT, 2, this.key(id, "seq"), this.key(id, "events"), JSON.stringify(full))) as number;
    return n;
  }

  /**
   * Keeps a step's traced samples with the job: appended to a bounded list (the newest
   * MAX_TRACES_KEPT stay) that expires with the job (the job key's TTL, or TRACES_TTL_S).
   * Once per step: a step retried after its traces were kept does not keep them again (a job has
   * one coordinator, so the check and the append do not race).
   */
  async appendTraces(id: string, samples: readonly TracedSample[], maxKept = MAX_TRACES_KEPT): Promise<void> {
    if (samples.length === 0) return;
    const key = this.key(id, "traces");
    const steps = new Set(samples.map((s) => Number(s.step)));
    const tail = await this.redis.lrange(key, -MAX_TRACES_PER_STEP * 2, -1);
    if (tail.some((r) => steps.has(Number((JSON.parse(r) as TracedSample).step)))) return;
    const ttlMs = await this.redis.pttl(this.key(id));
    await this.redis
      .multi()
      .rpush(key, ...samples.map((s) => JSON.stringify(s)))
      .ltrim(key, -maxKept, -1)
      .pexpire(key, ttlMs > 0 ? ttlMs : TRACES_TTL_S * 1000)
      .exec();
  }

  /** A job's kept traced samples with step >= fromStep, oldest first, at most `limit` (0 = all). */
  async readTraces(id: string, fromStep = 0, limit = 0): Promise<TracedSample[]> {
    const raw = await this.redis.lrange(this.key(id, "traces"), 0, -1);
    const all = raw.map((r) => JSON.parse(r) as TracedSample).filter((s) => Number(s.step) >= fromStep);
    return limit > 0 ? all.slice(0, limit) : all;
  }

  /**
   * Events with offset >= `from`. With `blockMs` > 0 and nothing available, waits up to that long
   * for new ones (XREAD BLOCK, on the caller's own connection).
   */
  async readEvents(id: string, from: number, blockMs = 0, conn: Redis = this.redis): Promise<JobEvent[]> {
    const key = this.key(id, "events");
    const parse = (entries: [string, string[]][]): JobEvent[] =>
      entries.map(([sid, fields]) => {
        const e = JSON.parse(fields[1] ?? "{}") as JobEvent;
        return { ...e, offset: Number(sid.split("-")[0]) };
      });
    const after = from <= 0 ? "0-0" : `${from - 1}-1`;
    if (blockMs <= 0) {
      const start = from <= 0 ? "-" : `${from}-1`;
      return parse(await conn.xrange(key, start, "+"));
    }
    const res = await conn.xread("BLOCK", blockMs, "STREAMS", key, after);
    return res?.[0] ? parse(res[0][1]) : [];
  }
}
