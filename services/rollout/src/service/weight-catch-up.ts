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
import { isNewerVersion } from "@rlmesh/shared/weights";

/** Deadline of the GetStatus probe. */
export const CATCH_UP_STATUS_DEADLINE_MS = 5000;
/** Deadline of a whole GetWeights download. */
export const CATCH_UP_DOWNLOAD_DEADLINE_MS = 60_000;

/**
 * Keeps a worker at the learner's latest version: at start-up and whenever it falls behind
 * (a push it missed while down, or a failed push), it pulls the weights with GetWeights.
 */
export class WeightCatchUp {
  private readonly client: LearnerServiceClient;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    learnerAddr: string,
    private readonly engine: RolloutEngine,
    private readonly logger: Logger,
    private readonly onSwapped: (version: number) => void,
  ) {
    this.client = createClient(loadProto().proto.rlmesh.v1.LearnerService, learnerAddr);
  }

  /** One check; resolves to the version served afterwards. Errors (learner down) are logged. */
  async check(): Promise<number> {
    const mine = Number(this.engine.modelInfo().policyVersion ?? 0);
    if (this.running) return mine;
    this.running = true;
    try {
      const status = await call<LearnerStatus>((cb) => this.client.getStatus({}, { deadline: new Date(Date.now() + CATCH_UP_STATUS_DEADLINE_MS) }, cb));
      if (!isNewerVersion(status.policyVersion, mine)) return mine;
      const asm = new WeightAssembler();
      const stream = this.client.getWeights({ minVersion: mine + 1 }, { deadline: new Date(Date.now() + CATCH_UP_DOWNLOAD_DEADLINE_MS) });
      for await (const chunk of stream as AsyncIterable<WeightChunk>) asm.add(chunk);
      const { version, tensors } = asm.finish();
      if (!isNewerVersion(version, this.engine.modelInfo().policyVersion)) return version;
      await this.engine.updateWeights(version, tensors);
      this.logger.info("caught up with the learner", { from: mine, to: version });
      this.onSwapped(version);
      return version;
    } catch (err) {
      this.logger.debug("weight catch-up skipped", { err: (err as Error).message });
      return mine;
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
