// Builds the Grafana dashboard deploy/grafana/dashboards/rlmesh.json: one panel per metric group
// of deploy/grafana/metric-catalogue.json, datasource by uid, templated by service and instance.
// Edit this file, not the JSON, then: node deploy/grafana/build-dashboard.mjs
// (test/src/deploy-dashboard.test.ts fails when the JSON and this script disagree).
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const DASHBOARD_FILE = fileURLToPath(new URL("./dashboards/rlmesh.json", import.meta.url));

export function buildDashboard() {
  const DS = { type: "prometheus", uid: "rlmesh-prometheus" };
  const SEL = 'service=~"$service", instance=~"$instance"';
  const R = "$__rate_interval";
  let id = 0;
  let y = 0;
  let x = 0;
  const panels = [];
  function row(title) {
    if (x !== 0) {
      y += 8;
      x = 0;
    }
    panels.push({ id: ++id, type: "row", title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
  }
  function panel(title, description, unit, targets, opts = {}) {
    const w = opts.w ?? 8;
    if (x + w > 24) {
      y += 8;
      x = 0;
    }
    panels.push({
      id: ++id,
      type: opts.type ?? "timeseries",
      title,
      description,
      datasource: DS,
      gridPos: { h: 8, w, x, y },
      fieldConfig: {
        defaults: { unit, ...(opts.min !== undefined ? { min: opts.min } : {}), ...(opts.max !== undefined ? { max: opts.max } : {}) },
        overrides: [],
      },
      options: { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "none" } },
      targets: targets.map(([expr, legendFormat], i) => ({
        refId: String.fromCharCode(65 + i),
        datasource: DS,
        expr,
        legendFormat,
        range: true,
      })),
    });
    x += w;
  }
  const q = (p, metric, by = "") => [
    `histogram_quantile(${p}, sum by (le${by ? ", " + by : ""}) (rate(${metric}_bucket{${SEL}}[${R}])))`,
    `p${Math.round(p * 100)}${by ? ` {{${by}}}` : ""}`,
  ];

  row("Job progress");
  panel("RL step", "Last completed RL step of the running job (rlmesh_job_step) and jobs being driven (rlmesh_jobs_running).", "short", [
    [`max(rlmesh_job_step{${SEL}})`, "step"],
    [`sum(rlmesh_jobs_running{${SEL}})`, "jobs running"],
  ]);
  panel(
    "Reward mean",
    "Mean binary reward of the candidates of the last step.",
    "percentunit",
    [[`max(rlmesh_job_reward_mean{${SEL}})`, "reward mean"]],
    { min: 0, max: 1 },
  );
  panel(
    "Held-out pass@1",
    "pass@1 on the held-out split at the last evaluation.",
    "percentunit",
    [[`max(rlmesh_job_eval_pass_at_1{${SEL}})`, "pass@1"]],
    { min: 0, max: 1 },
  );
  panel("Steps per minute", "RL steps completed per minute.", "short", [
    [`sum(rate(rlmesh_job_steps_total{${SEL}}[${R}])) * 60`, "steps/min"],
  ]);
  panel(
    "Step phase duration p50 / p95",
    "Time spent per phase of an RL step: rollout, reward, train, push.",
    "s",
    [q(0.5, "rlmesh_job_phase_duration_seconds", "phase"), q(0.95, "rlmesh_job_phase_duration_seconds", "phase")],
    { w: 16 },
  );

  row("Rollout");
  panel("Generated tokens / s", "Response tokens generated per second, per rollout worker.", "short", [
    [`sum by (instance) (rate(rlmesh_rollout_generated_tokens_total{${SEL}}[${R}]))`, "{{instance}}"],
    [`sum(rate(rlmesh_rollout_samples_total{${SEL}}[${R}]))`, "samples/s (all)"],
  ]);
  panel(
    "NFE per token",
    "Model forward passes per generated token: diffusion decoding cost. Lower is faster (parallel unmasking, Fast-dLLM caches).",
    "short",
    [[`sum(rate(rlmesh_rollout_nfe_total{${SEL}}[${R}])) / sum(rate(rlmesh_rollout_generated_tokens_total{${SEL}}[${R}]))`, "NFE/token"]],
  );
  panel("Batch size", "Sequences per Generate call: mean and p95.", "short", [
    [`sum(rate(rlmesh_rollout_batch_size_sum{${SEL}}[${R}])) / sum(rate(rlmesh_rollout_batch_size_count{${SEL}}[${R}]))`, "mean"],
    q(0.95, "rlmesh_rollout_batch_size"),
  ]);
  panel("Weight version", "Policy version each rollout worker serves, against the learner's version.", "short", [
    [`max by (instance) (rlmesh_rollout_weight_version{${SEL}})`, "rollout {{instance}}"],
    [`max(rlmesh_learner_policy_version{${SEL}})`, "learner"],
  ]);
  panel("Generate duration p50 / p95", "Duration of one Generate call.", "s", [
    q(0.5, "rlmesh_rollout_generate_duration_seconds"),
    q(0.95, "rlmesh_rollout_generate_duration_seconds"),
  ]);
  panel("Weight swap", "UpdateWeights receive + verify + swap time (p95) and weight bytes received per second.", "s", [
    q(0.95, "rlmesh_rollout_weight_swap_duration_seconds"),
    [`sum(rate(rlmesh_rollout_weight_received_bytes_total{${SEL}}[${R}]))`, "received bytes/s"],
  ]);
  panel(
    "Infill samples, expands, deletes, length-search candidates / s",
    "RolloutService.Infill: calls and filled middles per second by mode (variable = DreamOn expand/delete, fixed = a set number of masks), the <|expand|> commits and deleted middle positions of variable-length decodes per second, and the candidate middles the length search scored and those its syntax check screened out.",
    "short",
    [
      [`sum by (mode) (rate(rlmesh_rollout_infill_samples_total{${SEL}}[${R}]))`, "samples/s {{mode}}"],
      [`sum by (mode) (rate(rlmesh_rollout_infill_requests_total{${SEL}}[${R}]))`, "calls/s {{mode}}"],
      [`sum(rate(rlmesh_rollout_infill_expands_total{${SEL}}[${R}]))`, "expands/s"],
      [`sum(rate(rlmesh_rollout_infill_deletes_total{${SEL}}[${R}]))`, "deletes/s"],
      [`sum(rate(rlmesh_rollout_infill_length_candidates_total{${SEL}}[${R}]))`, "length-search candidates/s"],
      [`sum(rate(rlmesh_rollout_infill_length_screened_out_total{${SEL}}[${R}]))`, "screened out by syntax/s"],
    ],
  );
  panel(
    "Infill NFE per token, middle length",
    "Forward passes per returned middle token and mean middle length (tokens), by mode. A variable-length decode spends forwards on expansions and deletions too, so its NFE per token is above 1 at one token per step.",
    "short",
    [
      [`sum by (mode) (rate(rlmesh_rollout_infill_nfe_total{${SEL}}[${R}])) / sum by (mode) (rate(rlmesh_rollout_infill_middle_tokens_total{${SEL}}[${R}]))`, "NFE/token {{mode}}"],
      [`sum by (mode) (rate(rlmesh_rollout_infill_middle_tokens_total{${SEL}}[${R}])) / sum by (mode) (rate(rlmesh_rollout_infill_samples_total{${SEL}}[${R}]))`, "mean length {{mode}}"],
    ],
  );
  panel("Infill duration p50 / p95", "Duration of one Infill call, by mode.", "s", [
    q(0.5, "rlmesh_rollout_infill_duration_seconds", "mode"),
    q(0.95, "rlmesh_rollout_infill_duration_seconds", "mode"),
  ]);

  row("Decode traces");
  const mean = (metric, legend) => [`sum(rate(${metric}_sum{${SEL}}[${R}])) / sum(rate(${metric}_count{${SEL}}[${R}]))`, legend];
  panel(
    "Commit-order correlation",
    "Traced samples of jobs with trace_samples_per_step: Pearson correlation of response position and the step that committed its token. 1 = left to right, near 0 = sketch-first (structure before the middle), between = interleaved. Mean and p10 / p50 / p90 (rlmesh trace renders the samples).",
    "short",
    [
      mean("rlmesh_trace_order_correlation", "mean"),
      q(0.1, "rlmesh_trace_order_correlation"),
      q(0.5, "rlmesh_trace_order_correlation"),
      q(0.9, "rlmesh_trace_order_correlation"),
    ],
    { min: -1, max: 1 },
  );
  panel(
    "NFE per token (traced samples)",
    "Forward passes per response token of the traced samples: 1 = one token per step, lower = more tokens committed in parallel per forward.",
    "short",
    [mean("rlmesh_trace_nfe_per_token", "mean"), q(0.5, "rlmesh_trace_nfe_per_token"), q(0.95, "rlmesh_trace_nfe_per_token")],
    { min: 0 },
  );
  panel("Traced samples / min", "Traced samples the api keeps per minute (trace_samples_per_step per step).", "short", [
    [`sum(rate(rlmesh_trace_order_correlation_count{${SEL}}[${R}])) * 60`, "traced/min"],
  ]);

  row("Reward queue and sandboxes");
  panel("Queue depth", "Reward jobs waiting in the BullMQ queue (every executor reports the same queue: max).", "short", [
    [`max(rlmesh_queue_depth{${SEL}})`, "waiting"],
  ]);
  panel("Queue wait p50 / p95", "Time a reward job waited before its first attempt started.", "s", [
    q(0.5, "rlmesh_queue_wait_seconds"),
    q(0.95, "rlmesh_queue_wait_seconds"),
  ]);
  panel(
    "Sandbox executions / s by status",
    "Candidates scored per second, by final status (passed, failed, timeout, error, ...).",
    "short",
    [[`sum by (status) (rate(rlmesh_sandbox_executions_total{${SEL}}[${R}]))`, "{{status}}"]],
  );
  panel("Sandbox execution duration p50 / p95", "Time to score one candidate in its sandbox.", "s", [
    q(0.5, "rlmesh_sandbox_execution_duration_seconds"),
    q(0.95, "rlmesh_sandbox_execution_duration_seconds"),
  ]);
  panel("Sandbox pool", "Warm sandbox containers and how many run a candidate right now.", "short", [
    [`sum(rlmesh_sandbox_pool_size{${SEL}})`, "size"],
    [`sum(rlmesh_sandbox_pool_busy{${SEL}})`, "busy"],
  ]);

  row("Learner");
  panel("Loss", "GRPO loss of the last train step.", "short", [[`max(rlmesh_learner_loss{${SEL}})`, "loss"]]);
  panel(
    "Clip fraction",
    "Fraction of tokens whose importance ratio was clipped.",
    "percentunit",
    [[`max(rlmesh_learner_clip_fraction{${SEL}})`, "clip fraction"]],
    { min: 0 },
  );
  panel("Gradient norm", "Global gradient norm of the last step.", "short", [[`max(rlmesh_learner_grad_norm{${SEL}})`, "grad norm"]]);
  panel("Train step duration p50 / p95", "Duration of one TrainStep.", "s", [
    q(0.5, "rlmesh_learner_step_duration_seconds"),
    q(0.95, "rlmesh_learner_step_duration_seconds"),
  ]);
  panel(
    "Skipped batches",
    "Batches without an informative sample (every group all-pass or all-fail), so no update: a collapse shows up here.",
    "short",
    [[`sum(increase(rlmesh_learner_skipped_batches_total{${SEL}}[5m]))`, "skipped (5m)"]],
  );
  panel("Policy version", "Policy version after the learner's last update.", "short", [
    [`max(rlmesh_learner_policy_version{${SEL}})`, "version"],
  ]);
  panel(
    "Collapse-guard rollbacks",
    "Rollbacks to the last good checkpoint in the last hour, by trigger (reward or held-out pass@1 collapsed).",
    "short",
    [[`sum by (trigger) (increase(rlmesh_learner_rollbacks_total{${SEL}}[1h]))`, "{{trigger}}"]],
  );
  panel("Checkpoint write p50 / p95", "Time to write one checkpoint atomically.", "s", [
    q(0.5, "rlmesh_learner_checkpoint_duration_seconds"),
    q(0.95, "rlmesh_learner_checkpoint_duration_seconds"),
  ]);
  panel(
    "Warm-up",
    "Seconds the last job start spent compiling the job's batch shapes in the background, before its first TrainSteps need them (RLMESH_LEARNER_WARMUP; 0 = off or not run).",
    "s",
    [[`max(rlmesh_learner_warmup_seconds{${SEL}})`, "warm-up"]],
  );

  row("Weight push");
  panel("Weight push bytes / s", "Weight bytes the learner streams to rollout workers per second.", "Bps", [
    [`sum(rate(rlmesh_weight_push_bytes_total{${SEL}}[${R}]))`, "bytes/s"],
  ]);
  panel("Weight push duration p50 / p95", "Time to push one version to every rollout worker.", "s", [
    q(0.5, "rlmesh_weight_push_duration_seconds"),
    q(0.95, "rlmesh_weight_push_duration_seconds"),
  ]);
  panel(
    "Worker pushes by path",
    "Versions pushed to one rollout worker per second, by how they went: direct (on the kept data connection, no call), tcp_call, chunks; direct_lost (no answer, sent again) and failed should stay at 0.",
    "ops",
    [[`sum by (path) (rate(rlmesh_weight_push_worker_pushes_total{${SEL}}[${R}]))`, "{{path}}"]],
  );
  panel(
    "Versions behind",
    "How many versions each rollout worker lags the learner (0 = up to date).",
    "short",
    [[`max by (worker) (rlmesh_weight_push_versions_behind{${SEL}})`, "{{worker}}"]],
    { min: 0 },
  );

  row("Processes");
  panel("CPU", "CPU cores used by each service process.", "short", [
    [`sum by (service, instance) (rate(rlmesh_process_process_cpu_seconds_total{${SEL}}[${R}]))`, "{{service}} {{instance}}"],
  ]);
  panel("Memory", "Resident memory and V8 heap in use per process.", "bytes", [
    [`rlmesh_process_process_resident_memory_bytes{${SEL}}`, "rss {{service}} {{instance}}"],
    [`rlmesh_process_nodejs_heap_size_used_bytes{${SEL}}`, "heap {{service}} {{instance}}"],
  ]);
  panel("Event-loop lag p99", "99th percentile event-loop lag per process: a busy loop delays gRPC and heartbeats.", "s", [
    [`max by (service, instance) (rlmesh_process_nodejs_eventloop_lag_p99_seconds{${SEL}})`, "{{service}} {{instance}}"],
  ]);

  const variable = (name, label, query) => ({
    name,
    label,
    type: "query",
    datasource: DS,
    definition: query,
    query: { query, refId: `${name}-var` },
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: ".*",
    current: { selected: true, text: ["All"], value: ["$__all"] },
    sort: 1,
    hide: 0,
    options: [],
  });
  return {
    uid: "rlmesh-overview",
    title: "rlmesh",
    description:
      "rlmesh RL mesh: job progress, rollout, reward queue and sandboxes, learner, weight push, processes. Metrics: deploy/grafana/metric-catalogue.json.",
    tags: ["rlmesh"],
    timezone: "utc",
    schemaVersion: 39,
    version: 1,
    editable: true,
    graphTooltip: 1,
    refresh: "5s",
    time: { from: "now-30m", to: "now" },
    annotations: { list: [] },
    links: [],
    templating: {
      list: [
        variable("service", "service", "label_values(rlmesh_process_process_cpu_seconds_total, service)"),
        variable("instance", "instance", 'label_values(rlmesh_process_process_cpu_seconds_total{service=~"$service"}, instance)'),
      ],
    },
    panels,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dashboard = buildDashboard();
  writeFileSync(DASHBOARD_FILE, JSON.stringify(dashboard, null, 2) + "\n");
  console.log(`${DASHBOARD_FILE}: ${dashboard.panels.length} panels`);
}
