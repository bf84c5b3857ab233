import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { GenerateResponseIn } from "@rlmesh/shared";

/** Rollout metrics (see README "Metrics"). */
export class RolloutMetrics {
  readonly tokens: Counter;
  readonly nfe: Counter;
  readonly samples: Counter;
  readonly generateSeconds: Histogram;
  readonly batchSize: Histogram;
  readonly weightVersion: Gauge;
  readonly swapSeconds: Histogram;
  readonly swapBytes: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.tokens = new Counter({ name: "rlmesh_rollout_generated_tokens_total", help: "Response tokens generated", registers });
    this.nfe = new Counter({ name: "rlmesh_rollout_nfe_total", help: "Model forward passes (per sequence)", registers });
    this.samples = new Counter({ name: "rlmesh_rollout_samples_total", help: "Samples generated", registers });
    this.generateSeconds = new Histogram({ name: "rlmesh_rollout_generate_duration_seconds", help: "Generate call duration", buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64], registers });
    this.batchSize = new Histogram({ name: "rlmesh_rollout_batch_size", help: "Sequences per Generate call", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers });
    this.weightVersion = new Gauge({ name: "rlmesh_rollout_weight_version", help: "Policy version being served", registers });
    this.swapSeconds = new Histogram({ name: "rlmesh_rollout_weight_swap_duration_seconds", help: "UpdateWeights receive+verify+swap time", buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers });
    this.swapBytes = new Counter({ name: "rlmesh_rollout_weight_received_bytes_total", help: "Weight bytes received", registers });
  }

  observeGenerate(res: GenerateResponseIn, seconds: number): void {
    const samples = res.samples ?? [];
    let tokens = 0;
    let nfe = 0;
    for (const s of samples) {
      tokens += s.tokenIds?.length ?? 0;
      nfe += s.nfe ?? 0;
    }
    this.tokens.inc(tokens);
    this.nfe.inc(nfe);
    this.samples.inc(samples.length);
    this.generateSeconds.observe(seconds);
    this.batchSize.observe(samples.length);
  }

  observeSwap(version: number, seconds: number, bytes: number): void {
    this.weightVersion.set(version);
    this.swapSeconds.observe(seconds);
    this.swapBytes.inc(bytes);
  }
}
