import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { GenerateResponseIn } from "@rlmesh/shared";
import type { InfillResult } from "../runtime/infill-requests.js";

/** The `mode` label of the infill metrics: DreamOn expand/delete or a fixed number of masks. */
export type InfillMode = "variable" | "fixed";

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
  readonly infillRequests: Counter<"mode">;
  readonly infillSamples: Counter<"mode">;
  readonly infillMiddleTokens: Counter<"mode">;
  readonly infillNfe: Counter<"mode">;
  readonly infillExpands: Counter;
  readonly infillDeletes: Counter;
  readonly infillLengthCandidates: Counter;
  readonly infillLengthScreenedOut: Counter;
  readonly infillSeconds: Histogram<"mode">;

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
    const labelNames = ["mode"] as const;
    this.infillRequests = new Counter({ name: "rlmesh_rollout_infill_requests_total", help: "Infill calls completed, by mode (variable = expand/delete, fixed)", labelNames, registers });
    this.infillSamples = new Counter({ name: "rlmesh_rollout_infill_samples_total", help: "Infill samples (filled middles), by mode", labelNames, registers });
    this.infillMiddleTokens = new Counter({ name: "rlmesh_rollout_infill_middle_tokens_total", help: "Tokens in the returned middles, by mode", labelNames, registers });
    this.infillNfe = new Counter({ name: "rlmesh_rollout_infill_nfe_total", help: "Model forward passes of infill samples (per sequence), by mode", labelNames, registers });
    this.infillExpands = new Counter({ name: "rlmesh_rollout_infill_expands_total", help: "Infill <|expand|> commits (one mask became two)", registers });
    this.infillDeletes = new Counter({ name: "rlmesh_rollout_infill_deletes_total", help: "Infill middle positions deleted (EOS/delete tokens removed)", registers });
    this.infillLengthCandidates = new Counter({
      name: "rlmesh_rollout_infill_length_candidates_total",
      help: "Candidate middles the infill length search scored (variable length with length_search > 0)",
      registers,
    });
    this.infillLengthScreenedOut = new Counter({
      name: "rlmesh_rollout_infill_length_screened_out_total",
      help: "Length-search candidates whose program failed the syntax check",
      registers,
    });
    this.infillSeconds = new Histogram({
      name: "rlmesh_rollout_infill_duration_seconds",
      help: "Infill call duration, by mode",
      labelNames,
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers,
    });
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

  /** One completed Infill call (the runtime's result: it has the expand/delete counts the proto lacks). */
  observeInfill(res: InfillResult, seconds: number): void {
    const mode: InfillMode = res.variable ? "variable" : "fixed";
    let tokens = 0;
    let nfe = 0;
    let expands = 0;
    let deletes = 0;
    let candidates = 0;
    let screenedOut = 0;
    for (const s of res.samples) {
      candidates += s.lengthSearch?.candidates ?? 0;
      screenedOut += s.lengthSearch?.screenedOut ?? 0;
      tokens += s.middleTokenIds.length;
      nfe += s.nfe;
      expands += s.expands;
      deletes += s.deletes;
    }
    this.infillRequests.inc({ mode });
    this.infillSamples.inc({ mode }, res.samples.length);
    this.infillMiddleTokens.inc({ mode }, tokens);
    this.infillNfe.inc({ mode }, nfe);
    this.infillExpands.inc(expands);
    this.infillDeletes.inc(deletes);
    this.infillLengthCandidates.inc(candidates);
    this.infillLengthScreenedOut.inc(screenedOut);
    this.infillSeconds.observe({ mode }, seconds);
  }

  observeSwap(version: number, seconds: number, bytes: number): void {
    this.weightVersion.set(version);
    this.swapSeconds.observe(seconds);
    this.swapBytes.inc(bytes);
  }
}
