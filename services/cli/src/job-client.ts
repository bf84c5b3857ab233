import { call, createClient, loadProto, type Job, type JobEvent, type JobServiceClient, type JobSpecIn } from "@rlmesh/shared";
import { checkJobSpecJson } from "@rlmesh/shared/spec-json";

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

export const jobs = {
  /** Checks the spec strictly first (protobufjs would drop unknown keys and coerce types silently). */
  submit: (c: JobServiceClient, spec: JobSpecIn) => {
    checkJobSpecJson(spec);
    return call<Job>((cb) => c.submitJob({ spec }, deadline(), cb));
  },
  get: (c: JobServiceClient, id: string) => call<Job>((cb) => c.getJob({ id }, deadline(), cb)),
  list: (c: JobServiceClient, limit = 50) => call<{ jobs: Job[] }>((cb) => c.listJobs({ limit }, deadline(), cb)),
  cancel: (c: JobServiceClient, id: string, reason = "cancelled from the CLI") =>
    call<Job>((cb) => c.cancelJob({ id, reason }, deadline(), cb)),
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
};

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
