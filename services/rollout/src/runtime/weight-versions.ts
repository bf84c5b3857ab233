/**
 * The weight versions a rollout engine serves, and the swap protocol. Decode workers know a weight
 * set by a serial number that only grows within this process (versions repeat across jobs); this
 * maps each live serial to its job and version. A swap validates the tensors, has every worker
 * prepare a session of the new serial, then commits all of them (or discards it everywhere on any
 * failure, so the old version keeps serving). Swaps run one at a time, in call order.
 */
import type { HostTensor, Logger } from "@rlmesh/shared";
import { acceptsPolicy, formatPolicy, samePolicy, type PolicyRef } from "@rlmesh/shared/weights";
import type { DecodeWorkerPool } from "./decode-worker-pool.js";
import { validateWeights, WeightValidationError, type WeightSpec } from "./weight-validation.js";

/** Weight serials remembered besides the served one (batches in flight across swaps report theirs). */
const KEPT_POLICY_SERIALS = 16;

export interface SwapResult {
  version: number;
  jobId: string;
  swapSeconds: number;
}

export interface SwapOptions {
  /** The job whose policy `version` is. @defaultValue the job served now */
  jobId?: string;
  /** Swap only if this policy is still the one served (a catch-up that a push overtook). */
  ifServing?: PolicyRef;
}

/** Thrown when a swap's `ifServing` no longer holds: another version was swapped in meanwhile. */
export class SupersededSwapError extends WeightValidationError {
  override name = "SupersededSwapError";
}

export class WeightVersions {
  /** The policy served now (job and its version). */
  private policy: PolicyRef;
  private serial = 0;
  private readonly policies = new Map<number, PolicyRef>();
  private swapChain: Promise<unknown> = Promise.resolve();

  constructor(
    initialVersion: number,
    private readonly specs: readonly WeightSpec[],
    private readonly pool: DecodeWorkerPool,
    private readonly logger?: Logger,
  ) {
    this.policy = { jobId: "", version: initialVersion };
    this.policies.set(0, this.policy);
  }

  /** The policy served now. */
  get current(): PolicyRef {
    return this.policy;
  }

  /** The job and version of a decode worker's weight serial. */
  policyOf(serial: number): PolicyRef {
    return this.policies.get(serial) ?? this.policy;
  }

  /** The oldest policy among the serials a request's batches reported (and the one served now). */
  oldestOf(serials: readonly number[]): PolicyRef {
    return this.policyOf(Math.min(...serials, this.serial));
  }

  /**
   * Validates `tensors` (names, dtypes, shapes, finite values) against the model, prepares a
   * session of the new version on every worker, then switches all of them. Batches in flight
   * finish on the version they started with. On any failure the old version keeps serving.
   */
  swap(version: number, tensors: readonly HostTensor[], opts: SwapOptions = {}): Promise<SwapResult> {
    const run = () => this.swapNow(version, tensors, opts);
    const p = this.swapChain.then(run, run);
    this.swapChain = p.catch(() => undefined);
    return p;
  }

  private async swapNow(version: number, tensors: readonly HostTensor[], opts: SwapOptions): Promise<SwapResult> {
    const t0 = performance.now();
    const next: PolicyRef = { jobId: opts.jobId ?? this.policy.jobId, version };
    this.checkReplaces(next, opts.ifServing);
    const weights = validateWeights(this.specs, tensors);
    const entries = [...weights];
    const serial = this.serial + 1;
    const results = await Promise.allSettled(this.pool.requestEach(`prepare:${serial}`, { type: "prepare", version: serial, weights: entries }));
    const failed = results.find((r) => r.status === "rejected" || r.value.type !== "prepared");
    if (failed) {
      this.pool.postEach({ type: "discard", version: serial });
      const why = failed.status === "rejected" ? (failed.reason as Error).message : "unexpected reply";
      throw new WeightValidationError(`weights of ${formatPolicy(next)} could not be loaded: ${why}`);
    }
    await Promise.all(this.pool.requestEach(`commit:${serial}`, { type: "commit", version: serial }));
    this.serial = serial;
    this.policy = next;
    this.policies.set(serial, next);
    // Batches in flight report the serial they started with; a few swaps back is plenty.
    for (const k of this.policies.keys()) if (k < serial - KEPT_POLICY_SERIALS) this.policies.delete(k);
    const swapSeconds = (performance.now() - t0) / 1000;
    this.logger?.info("weights swapped", { version, job: next.jobId, swap_seconds: swapSeconds });
    return { version, jobId: next.jobId, swapSeconds };
  }

  /** Throws WeightValidationError (SupersededSwapError for a stale `ifServing`) unless `next` may replace the served policy. */
  private checkReplaces(next: PolicyRef, ifServing: PolicyRef | undefined): void {
    const { version } = next;
    if (!Number.isSafeInteger(version) || version < 0) throw new WeightValidationError(`version ${version} must be a non-negative integer`);
    if (ifServing && !samePolicy(ifServing, this.policy)) {
      throw new SupersededSwapError(`${formatPolicy(next)} was meant to replace ${formatPolicy(ifServing)}, but ${formatPolicy(this.policy)} is served now`);
    }
    if (!acceptsPolicy(next, this.policy)) {
      throw new WeightValidationError(
        next.jobId === this.policy.jobId
          ? `version ${version} must be an integer greater than the serving version ${this.policy.version} of the same job`
          : `${formatPolicy(next)} cannot replace ${formatPolicy(this.policy)}`,
      );
    }
  }
}
