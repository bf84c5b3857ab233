import { call, createClient, loadProto, type Job, type JobEvent, type JobServiceClient, type JobSpecIn } from "@rlmesh/shared";
import { Metadata, status } from "@grpc/grpc-js";
import { checkJobSpecJson } from "@rlmesh/shared/spec-json";
import type { GetJobTracesResponse__Output as GetJobTracesResponse } from "@rlmesh/shared/gen/rlmesh/v1/GetJobTracesResponse";

/** Default api address; RLMESH_API_ADDR overrides it. */
export const DEFAULT_API_ADDR = "127.0.0.1:50051";
export const CLI_CALL_TIMEOUT_MS = 30_000;

export function apiAddress(): string {
  return process.env.RLMESH_API_ADDR || DEFAULT_API_ADDR;
}

export function jobClient(address = apiAddress()): JobServiceClient {
  return createClient(loadProto().proto.rlmesh.v1.JobService, address);
}

const deadline = () => ({ deadline: new Date(Date.now() + CLI_CALL_TIMEOUT_MS) });
// waitForReady: a call made while the channel is reconnecting (an api restart) waits for it, up to
// the deadline, instead of failing at once with UNAVAILABLE. Nothing is sent before it connects.
const ready = () => new Metadata({ waitForReady: true });

export const jobs = {
  /** Checks the spec strictly first (protobufjs would drop unknown keys and coerce types silently). */
  submit: (c: JobServiceClient, spec: JobSpecIn) => {
    checkJobSpecJson(spec);
    return call<Job>((cb) => c.submitJob({ spec }, ready(), deadline(), cb));
  },
  get: (c: JobServiceClient, id: string) => call<Job>((cb) => c.getJob({ id }, ready(), deadline(), cb)),
  list: (c: JobServiceClient, limit = 50) => call<{ jobs: Job[] }>((cb) => c.listJobs({ limit }, ready(), deadline(), cb)),
  /** The traced samples the job kept (spec.trace_samples_per_step), oldest step first. */
  traces: (c: JobServiceClient, id: string, fromStep = 0, limit = 0) =>
    call<GetJobTracesResponse>((cb) => c.getJobTraces({ id, fromStep, limit }, ready(), deadline(), cb)),
  cancel: (c: JobServiceClient, id: string, reason = "cancelled from the CLI") =>
    call<Job>((cb) => c.cancelJob({ id, reason }, ready(), deadline(), cb)),
  /** Streams events from `fromOffset` until the job ends (or `signal` aborts). */
  async *watch(c: JobServiceClient, id: string, fromOffset = 0, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const stream = c.watchJob({ id, fromOffset });
    signal?.addEventListener("abort", () => stream.cancel(), { once: true });
    try {
      for await (const e of stream as AsyncIterable<JobEvent>) yield e;
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  },
  /**
   * watch() that survives an api restart or a dropped connection: on UNAVAILABLE (or a stream
   * cut mid-way) it waits, reconnects and resumes after the last event it yielded, so no event
   * is lost or repeated. Gives up after `giveUpMs` without reaching the api.
   */
  async *watchResilient(
    c: JobServiceClient,
    id: string,
    fromOffset = 0,
    opts: { signal?: AbortSignal; onRetry?: (message: string) => void; giveUpMs?: number } = {},
  ): AsyncGenerator<JobEvent> {
    let next = fromOffset;
    let downSince = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const e of jobs.watch(c, id, next, opts.signal)) {
          next = Number(e.offset) + 1;
          downSince = 0;
          attempt = 0;
          yield e;
        }
        return;
      } catch (err) {
        if (opts.signal?.aborted || !isRetryableWatchError(err)) throw err;
        downSince ||= Date.now();
        if (Date.now() - downSince > (opts.giveUpMs ?? WATCH_GIVE_UP_MS)) throw err;
        const waitMs = Math.min(5000, 500 * 2 ** Math.min(attempt, 4));
        opts.onRetry?.(`api unavailable (${(err as { details?: string }).details || (err as Error).message}); reconnecting in ${waitMs / 1000} s and resuming at event ${next}`);
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  },
};

/** How long watchResilient keeps trying to reach the api before it gives up. */
export const WATCH_GIVE_UP_MS = 5 * 60_000;

/** Errors after which a watch reconnects: the api is down or restarting, or the stream was cut. */
function isRetryableWatchError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (code === status.UNAVAILABLE) return true;
  // A server that dies mid-stream surfaces as INTERNAL/UNKNOWN "Connection dropped" or RST_STREAM.
  const details = String((err as { details?: string }).details ?? (err as Error).message ?? "");
  return (code === status.INTERNAL || code === status.UNKNOWN || code === status.CANCELLED) && /connection dropped|rst_stream|stream removed|goaway|econnreset/i.test(details);
}

/** snake_case keys (as users write specs) to the camelCase the proto loader expects. */
export function camelKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()), camelKeys(x)]),
    );
  }
  return v;
}
