import {
  call,
  createClient,
  loadProto,
  WeightAssembler,
  type LearnerServiceClient,
  type LearnerStatus,
  type Logger,
  type WeightChunk,
} from "@rlmesh/shared";
import type { RolloutEngine } from "./rollout-engine.js";
import { acceptsPolicy, formatPolicy, type PolicyRef } from "@rlmesh/shared/weights";

/** Deadline of the GetStatus probe. */
export const CATCH_UP_STATUS_DEADLINE_MS = 5000;
/** Deadline of a whole GetWeights download. */
export const CATCH_UP_DOWNLOAD_DEADLINE_MS = 60_000;

/**
 * Keeps a worker at the learner's policy: at start-up and whenever it falls behind (a push it
 * missed while down, a failed push, or a job it was asked for but does not serve), it pulls the
 * weights with GetWeights. Versions are scoped by job (acceptsPolicy): another job's policy is
 * taken at any version, the served job's only when newer. A learner with no job started has
 * nothing to give (the worker keeps its model directory's weights).
 */
export class WeightCatchUp {
  private readonly client: LearnerServiceClient;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    learnerAddr: string,
    private readonly engine: RolloutEngine,
    private readonly logger: Logger,
    private readonly onSwapped: (policy: PolicyRef) => void,
  ) {
    this.client = createClient(loadProto().proto.rlmesh.v1.LearnerService, learnerAddr);
  }

  /** One check; resolves to the policy served afterwards. Errors (learner down) are logged. */
  async check(): Promise<PolicyRef> {
    const mine = this.engine.servedPolicy();
    if (this.running) return mine;
    this.running = true;
    try {
      const status = await call<LearnerStatus>((cb) => this.client.getStatus({}, { deadline: new Date(Date.now() + CATCH_UP_STATUS_DEADLINE_MS) }, cb));
      const learner = { jobId: status.jobId, version: Number(status.policyVersion) };
      if (!learner.jobId || !acceptsPolicy(learner, mine)) return mine;
      const asm = new WeightAssembler();
      const minVersion = learner.jobId === mine.jobId ? mine.version + 1 : 0;
      const stream = this.client.getWeights({ minVersion }, { deadline: new Date(Date.now() + CATCH_UP_DOWNLOAD_DEADLINE_MS) });
      for await (const chunk of stream as AsyncIterable<WeightChunk>) asm.add(chunk);
      const { version, jobId, tensors } = asm.finish();
      const got = { jobId, version };
      if (!acceptsPolicy(got, this.engine.servedPolicy())) return this.engine.servedPolicy();
      // Only over the policy this check started from: a push that landed meanwhile is newer.
      await this.engine.updateWeights(got, tensors, mine);
      this.logger.info("caught up with the learner", { from: formatPolicy(mine), to: formatPolicy(got) });
      this.onSwapped(got);
      return got;
    } catch (err) {
      this.logger.debug("weight catch-up skipped", { err: (err as Error).message });
      return this.engine.servedPolicy();
    } finally {
      this.running = false;
    }
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.client.close();
  }
}
