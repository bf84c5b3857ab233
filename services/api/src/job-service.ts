import { status } from "@grpc/grpc-js";
import type * as grpc from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import {
  check,
  GrpcError,
  notFound,
  serverStream,
  unary,
  InvalidArgumentError,
  type Job,
  type JobEvent,
  type JobServiceHandlers,
  type Logger,
} from "@rlmesh/shared";
import type { GetJobRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/GetJobRequest";
import type { ListJobsRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/ListJobsRequest";
import type { CancelJobRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/CancelJobRequest";
import type { SubmitJobRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/SubmitJobRequest";
import type { WatchJobRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/WatchJobRequest";
import type { GetJobTracesRequest__Output } from "@rlmesh/shared/gen/rlmesh/v1/GetJobTracesRequest";
import { JobStore, MAX_TRACES_KEPT, TERMINAL_STATES } from "./job-store.js";
import { normalizeSpec, type NormalizedJobSpec } from "./job-spec.js";

/** How long one blocking read of a job's event stream waits before re-checking the job. */
export const WATCH_POLL_MS = 1000;
export const DEFAULT_LIST_LIMIT = 100;

export interface JobServiceDeps {
  store: JobStore;
  /** A connection WatchJob streams may block on (each stream duplicates it). */
  redis: Redis;
  logger: Logger;
  /**
   * Loads the spec's model directory and compares it with what the mesh serves; throws
   * InvalidArgumentError (a broken model) or FAILED_PRECONDITION (another model than the workers').
   */
  validateModel?: (spec: NormalizedJobSpec) => void | Promise<void>;
  /** Loads the spec's datasets; throws InvalidArgumentError naming the bad row and field. */
  validateDatasets?: (spec: NormalizedJobSpec) => void | Promise<void>;
  /** Called after a job is stored; the coordinator starts it. */
  onSubmitted?: (job: Job) => void;
  /** Called after a job is cancelled; the coordinator stops its in-flight work. */
  onCancelled?: (job: Job) => void;
}

const JOB_ID = /^[A-Za-z0-9_-]{1,128}$/;
function jobId(field: string, id: string): string {
  check.nonEmpty(field, id);
  if (!JOB_ID.test(id)) throw new InvalidArgumentError(field, `must match ${JOB_ID.source}, got ${JSON.stringify(id)}`);
  return id;
}

export function createJobService(deps: JobServiceDeps): JobServiceHandlers {
  const { store, logger } = deps;
  const mustGet = async (id: string): Promise<Job> => {
    const job = await store.get(id);
    if (!job) throw notFound(`job ${id} not found`);
    return job;
  };
  return {
    SubmitJob: unary(logger, "SubmitJob", async (req: SubmitJobRequest__Output) => {
      const spec = normalizeSpec(req.spec);
      await deps.validateModel?.(spec);
      await deps.validateDatasets?.(spec);
      const job = await store.create(spec);
      logger.info("job submitted", { job: job.id, steps: spec.steps });
      deps.onSubmitted?.(job);
      return job;
    }),
    // The traced samples the coordinator kept (spec.trace_samples_per_step), oldest step first.
    GetJobTraces: unary(logger, "GetJobTraces", async (req: GetJobTracesRequest__Output) => {
      const id = jobId("id", req.id);
      const fromStep = Number(req.fromStep);
      if (!Number.isSafeInteger(fromStep) || fromStep < 0) throw new InvalidArgumentError("from_step", `must be an integer >= 0 (0 = all steps), got ${req.fromStep}`);
      const limit = req.limit ? check.int("limit", req.limit, 1, MAX_TRACES_KEPT) : 0;
      await mustGet(id);
      return { samples: await store.readTraces(id, fromStep, limit) };
    }),
    GetJob: unary(logger, "GetJob", async (req: GetJobRequest__Output) => mustGet(jobId("id", req.id))),
    ListJobs: unary(logger, "ListJobs", async (req: ListJobsRequest__Output) => {
      const limit = req.limit ? check.int("limit", req.limit, 1, 10_000) : DEFAULT_LIST_LIMIT;
      return { jobs: await store.list(req.state, limit) };
    }),
    CancelJob: unary(logger, "CancelJob", async (req: CancelJobRequest__Output) => {
      const id = jobId("id", req.id);
      const job = await mustGet(id);
      if (TERMINAL_STATES.has(job.state)) {
        throw new GrpcError(status.FAILED_PRECONDITION, `job ${id} has already ended (${job.state}); only a queued or running job can be cancelled`);
      }
      const next = await store.transition(id, "JOB_STATE_CANCELLED", req.reason || "cancelled by user");
      logger.info("job cancelled", { job: id });
      deps.onCancelled?.(next);
      return next;
    }),
    WatchJob: serverStream(logger, "WatchJob", async (call: grpc.ServerWritableStream<WatchJobRequest__Output, JobEvent>) => {
      const id = jobId("id", call.request.id);
      const from = call.request.fromOffset;
      if (from < 0) throw new InvalidArgumentError("from_offset", `must be >= 0, got ${from}`);
      await mustGet(id);
      let next = from;
      let cancelled = false;
      call.on("cancelled", () => (cancelled = true));
      const conn = deps.redis.duplicate();
      conn.on("error", () => undefined);
      try {
        while (!cancelled) {
          const events = await store.readEvents(id, next);
          for (const e of events) {
            call.write(e);
            next = e.offset + 1;
          }
          if (events.length > 0) continue;
          const job = await mustGet(id);
          if (TERMINAL_STATES.has(job.state) && next >= job.eventCount) return;
          // Wait for the next event (or time out and re-check the job's state).
          const waited = await store.readEvents(id, next, WATCH_POLL_MS, conn);
          for (const e of waited) {
            if (cancelled) break;
            call.write(e);
            next = e.offset + 1;
          }
        }
      } finally {
        conn.disconnect();
      }
    }),
  };
}
