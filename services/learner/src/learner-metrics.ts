import { COLLAPSE_TRIGGERS } from "./trainer/collapse-guard.js";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { TrainStatsIn } from "@rlmesh/shared";

/** The `path` values of rlmesh_weight_push_worker_pushes_total. */
export const PUSH_PATHS = ["direct", "tcp_call", "chunks", "direct_lost", "failed"] as const;
export type PushPath = (typeof PUSH_PATHS)[number];

/** Learner and weight-push metrics (see README "Metrics"). */
export class LearnerMetrics {
  readonly loss: Gauge;
  readonly clipFraction: Gauge;
  readonly gradNorm: Gauge;
  readonly stepSeconds: Histogram;
  readonly policyVersion: Gauge;
  readonly skipped: Counter;
  readonly pushBytes: Counter;
  readonly pushSeconds: Histogram;
  readonly versionsBehind: Gauge;
  readonly pushPaths: Counter;
  readonly rollbacks: Counter;
  readonly checkpointSeconds: Histogram;
  readonly warmupSeconds: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.loss = new Gauge({ name: "rlmesh_learner_loss", help: "GRPO loss of the last step", registers });
    this.clipFraction = new Gauge({ name: "rlmesh_learner_clip_fraction", help: "Fraction of clipped ratios in the last step", registers });
    this.gradNorm = new Gauge({ name: "rlmesh_learner_grad_norm", help: "Gradient norm before clipping, last step", registers });
    this.stepSeconds = new Histogram({
      name: "rlmesh_learner_step_duration_seconds",
      help: "TrainStep compute time",
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.policyVersion = new Gauge({ name: "rlmesh_learner_policy_version", help: "Latest policy version", registers });
    this.skipped = new Counter({
      name: "rlmesh_learner_skipped_batches_total",
      help: "Batches without an informative sample (no update)",
      registers,
    });
    this.pushBytes = new Counter({ name: "rlmesh_weight_push_bytes_total", help: "Weight bytes pushed to rollout workers", registers });
    this.pushSeconds = new Histogram({
      name: "rlmesh_weight_push_duration_seconds",
      help: "Time to push one version to every worker",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers,
    });
    this.versionsBehind = new Gauge({
      name: "rlmesh_weight_push_versions_behind",
      help: "Versions a rollout worker is behind the learner",
      labelNames: ["worker"],
      registers,
    });
    this.pushPaths = new Counter({
      name: "rlmesh_weight_push_worker_pushes_total",
      help: "Versions pushed to one worker, by the way they went: direct (kept data connection, no call), tcp_call (data connection with a call), chunks (on the gRPC stream), failed; and direct_lost, a direct push without an answer that was sent again (counted once more under the way it then went)",
      labelNames: ["path"],
      registers,
    });
    for (const path of PUSH_PATHS) this.pushPaths.inc({ path }, 0);
    this.rollbacks = new Counter({
      name: "rlmesh_learner_rollbacks_total",
      help: "Collapse-guard rollbacks to the last good checkpoint",
      labelNames: ["trigger"],
      registers,
    });
    // Export every trigger at 0 so dashboards show "no rollbacks" rather than "no data".
    for (const trigger of COLLAPSE_TRIGGERS) this.rollbacks.inc({ trigger }, 0);
    this.checkpointSeconds = new Histogram({
      name: "rlmesh_learner_checkpoint_duration_seconds",
      help: "Time to write one checkpoint atomically",
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    });
    this.warmupSeconds = new Gauge({
      name: "rlmesh_learner_warmup_seconds",
      help: "Seconds the last job start spent compiling its batch shapes (warm-up; RLMESH_LEARNER_WARMUP)",
      registers,
    });
  }

  observeStep(version: number, stats: TrainStatsIn): void {
    this.policyVersion.set(version);
    if (stats.skipped) {
      this.skipped.inc();
      return;
    }
    this.loss.set(Number(stats.loss ?? 0));
    this.clipFraction.set(Number(stats.clipFraction ?? 0));
    this.gradNorm.set(Number(stats.gradNorm ?? 0));
    this.stepSeconds.observe(Number(stats.seconds ?? 0));
  }
}
