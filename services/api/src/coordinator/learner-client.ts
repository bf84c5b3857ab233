import {
  checkHealth,
  createClient,
  isRetryable,
  loadProto,
  type LearnerServiceClient,
  type Logger,
  type FinalizeWeightsRequestIn,
  type FinalizeWeightsResponse,
  type ReportEvalRequestIn,
  type ReportEvalResponse,
  type StartJobRequestIn,
  type StartJobResponse,
  type TrainStepRequestIn,
  type TrainStepResponse,
} from "@rlmesh/shared";
import type { LearnerClient } from "./interfaces.js";

/** Deadline for one TrainStep (including the weight push). */
export const TRAIN_STEP_TIMEOUT_MS = 600_000;
const TRAIN_STEP_ATTEMPTS = 30;

/**
 * gRPC LearnerService client. TrainStep is idempotent per (job, step) on the learner, so an
 * UNAVAILABLE learner (restarting after a crash) is simply retried.
 */
export class GrpcLearnerClient implements LearnerClient {
  private readonly client: LearnerServiceClient;

  constructor(
    private readonly address: string,
    private readonly logger: Logger,
  ) {
    this.client = createClient(loadProto().proto.rlmesh.v1.LearnerService, address);
  }

  /** StartJob is idempotent per job (a started job answers with its state), so it is retried too. */
  startJob(req: StartJobRequestIn, signal?: AbortSignal): Promise<StartJobResponse> {
    return this.retried("StartJob", signal, (deadline, cb) => this.client.startJob(req, { deadline }, cb));
  }

  trainStep(req: TrainStepRequestIn, signal?: AbortSignal): Promise<TrainStepResponse> {
    return this.retried("TrainStep", signal, (deadline, cb) => this.client.trainStep(req, { deadline }, cb));
  }

  /** A call retried while the learner is UNAVAILABLE (restarting after a crash). */
  private async retried<T>(
    name: string,
    signal: AbortSignal | undefined,
    start: (deadline: Date, cb: (err: Error | null, res?: T) => void) => { cancel(): void },
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw signal.reason;
      try {
        return await new Promise<T>((resolve, reject) => {
          const c = start(new Date(Date.now() + TRAIN_STEP_TIMEOUT_MS), (err, res) => (err ? reject(err) : resolve(res!)));
          signal?.addEventListener("abort", () => c.cancel(), { once: true });
        });
      } catch (err) {
        if (!isRetryable(err) || attempt >= TRAIN_STEP_ATTEMPTS) throw err;
        this.logger.warn(`learner unavailable, retrying ${name}`, { attempt, err: (err as Error).message });
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
  }

  /** Null when the learner answers SERVING on gRPC health, else what it answered. */
  async unavailable(): Promise<string | null> {
    const st = await checkHealth(this.address, "", 2000).catch((err: Error) => `unreachable: ${err.message.split("\n")[0]}`);
    return st === "SERVING" ? null : `the learner at ${this.address} (${st || "not answering"})`;
  }

  async finalizeWeights(req: FinalizeWeightsRequestIn, signal?: AbortSignal): Promise<FinalizeWeightsResponse> {
    return new Promise<FinalizeWeightsResponse>((resolve, reject) => {
      const c = this.client.finalizeWeights(req, { deadline: new Date(Date.now() + TRAIN_STEP_TIMEOUT_MS) }, (err, res) => (err ? reject(err) : resolve(res!)));
      signal?.addEventListener("abort", () => c.cancel(), { once: true });
    });
  }

  async reportEval(req: ReportEvalRequestIn, signal?: AbortSignal): Promise<ReportEvalResponse> {
    return new Promise<ReportEvalResponse>((resolve, reject) => {
      const c = this.client.reportEval(req, { deadline: new Date(Date.now() + TRAIN_STEP_TIMEOUT_MS) }, (err, res) => (err ? reject(err) : resolve(res!)));
      signal?.addEventListener("abort", () => c.cancel(), { once: true });
    });
  }

  close(): void {
    this.client.close();
  }
}
