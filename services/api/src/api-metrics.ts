import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Job-progress metrics of the api (no job ids as labels: one series per phase at most). */
export class ApiMetrics {
  readonly step: Gauge;
  readonly rewardMean: Gauge;
  readonly evalPassAt1: Gauge;
  readonly stepsTotal: Counter;
  readonly phaseSeconds: Histogram;
  readonly jobsRunning: Gauge;
  readonly samplesDropped: Counter;
  readonly traceOrderCorrelation: Histogram;
  readonly traceNfePerToken: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.step = new Gauge({ name: "rlmesh_job_step", help: "Last completed RL step of the running job", registers });
    this.rewardMean = new Gauge({ name: "rlmesh_job_reward_mean", help: "Mean reward of the last step", registers });
    this.evalPassAt1 = new Gauge({ name: "rlmesh_job_eval_pass_at_1", help: "Held-out pass@1 at the last evaluation", registers });
    this.stepsTotal = new Counter({ name: "rlmesh_job_steps_total", help: "RL steps completed", registers });
    this.phaseSeconds = new Histogram({
      name: "rlmesh_job_phase_duration_seconds",
      help: "Time per RL step phase (rollout, reward, train, push)",
      labelNames: ["phase"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.jobsRunning = new Gauge({ name: "rlmesh_jobs_running", help: "Jobs being driven by this api", registers });
    this.samplesDropped = new Counter({
      name: "rlmesh_reward_samples_dropped_total",
      help: "Candidates left out of their group with no reward because the sandbox infrastructure failed on every attempt (never scored 0)",
      labelNames: ["reason", "phase"],
      registers,
    });
    this.traceOrderCorrelation = new Histogram({
      name: "rlmesh_trace_order_correlation",
      help: "Traced samples (spec.trace_samples_per_step): Pearson correlation of response position and commit step (1 = left to right, near 0 = sketch-first)",
      buckets: [-0.5, 0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1],
      registers,
    });
    this.traceNfePerToken = new Histogram({
      name: "rlmesh_trace_nfe_per_token",
      help: "Traced samples: forward passes per response token (1 = one token per step; lower = more parallel decoding)",
      buckets: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.5, 2],
      registers,
    });
  }

  /** One kept traced sample: its order correlation and NFE per response token. */
  observeTrace(orderCorrelation: number, nfe: number, tokens: number): void {
    this.traceOrderCorrelation.observe(orderCorrelation);
    if (tokens > 0) this.traceNfePerToken.observe(nfe / tokens);
  }

  observeStep(step: number, rewardMean: number, phases: Record<string, number>): void {
    this.step.set(step);
    this.rewardMean.set(rewardMean);
    this.stepsTotal.inc();
    for (const [phase, s] of Object.entries(phases)) this.phaseSeconds.observe({ phase }, s);
  }
}
