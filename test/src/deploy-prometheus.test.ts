// Proves the dashboard-to-Prometheus path: a real Prometheus scrapes small prom-client
// exporters that serve every catalogue metric (as the services do, with the `service` label and
// the process defaults), and every dashboard panel's PromQL and every variable returns data.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createMetrics, type MetricsServer } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import {
  type CatalogueMetric,
  type PrometheusInstance,
  evaluateDashboard,
  loadCatalogue,
  loadDashboard,
  startPrometheus,
} from "./prometheus-harness.js";

/** Sample label values for the catalogue's labelled metrics (bounded sets, as in the services). */
const SAMPLE_LABELS: Record<string, string[]> = {
  phase: ["rollout", "reward", "train", "push"],
  status: ["passed", "failed", "timeout"],
  worker: ["rollout-0", "rollout-1"],
  trigger: ["step_reward", "heldout_pass_at_1"],
};
const SCRAPES_BEFORE_EVALUATION = 3;
const PROMTOOL_BIN = "/usr/bin/promtool";
const PROMETHEUS_CONFIGS = ["prometheus.yml", "prometheus.local.yml", "prometheus.k8s.yml"].map((f) =>
  join(REPO_ROOT, "deploy", "prometheus", f),
);
/** Metrics port of each service, as docker-compose.yml and deploy/k8s set them. */
const METRICS_PORTS: Record<string, number> = { api: 9451, rollout: 9461, learner: 9471, executor: 9464 };

/** Registers one catalogue metric whose value moves on every scrape, so rates are non-zero. */
function registerSample(registry: Registry, m: CatalogueMetric): void {
  const labelNames = m.labels ?? [];
  const labelSets: Record<string, string>[] = labelNames.reduce<Record<string, string>[]>(
    (sets, name) => sets.flatMap((s) => (SAMPLE_LABELS[name] ?? ["x"]).map((v) => ({ ...s, [name]: v }))),
    [{}],
  );
  const common = { name: m.name, help: m.help, labelNames, registers: [registry] };
  let tick = 0;
  if (m.type === "counter") {
    new Counter({
      ...common,
      collect() {
        for (const l of labelSets) this.inc(l, 1 + (tick++ % 3));
      },
    });
  } else if (m.type === "gauge") {
    new Gauge({
      ...common,
      collect() {
        for (const l of labelSets) this.set(l, 0.25 + (tick++ % 4) / 8);
      },
    });
  } else {
    const buckets = m.name === "rlmesh_rollout_batch_size" ? [1, 2, 4, 8, 16, 32, 64] : [0.01, 0.1, 0.5, 1, 5, 30];
    new Histogram({
      ...common,
      buckets,
      collect() {
        for (const l of labelSets) this.observe(l, buckets[tick++ % buckets.length]! * 0.9);
      },
    });
  }
}

let prom: PrometheusInstance;
const servers: MetricsServer[] = [];
const started = Date.now();

before(async () => {
  const catalogue = loadCatalogue();
  const services = [...new Set(catalogue.metrics.map((m) => m.service ?? "unknown"))];
  const jobs = [];
  for (const service of services) {
    const metrics = createMetrics(service);
    for (const m of catalogue.metrics.filter((x) => x.service === service)) registerSample(metrics.registry, m);
    const server = await metrics.serve(0, "127.0.0.1");
    servers.push(server);
    jobs.push({ job: `rlmesh-${service}`, targets: [`127.0.0.1:${server.port}`] });
  }
  prom = await startPrometheus({ jobs, scrapeIntervalS: 1 });
  await prom.waitForScrapes(SCRAPES_BEFORE_EVALUATION);
});

after(async () => {
  await prom?.stop();
  await Promise.all(servers.map((s) => s.close()));
});

test("every dashboard panel query returns data from a real Prometheus", async () => {
  const { panels } = await evaluateDashboard(prom, loadDashboard(), { rateInterval: "30s" });
  assert.ok(panels.length > 20, `only ${panels.length} queries`);
  const failed = panels
    .filter((r) => r.error !== undefined || r.samples === 0)
    .map((r) => `panel ${r.panelId} "${r.panelTitle}" ${r.refId}: ${r.error ?? "no data"} — ${r.evaluated}`);
  assert.deepEqual(failed, []);
});

test("the service and instance variables list the scraped services and targets", async () => {
  const { variables } = await evaluateDashboard(prom, loadDashboard());
  const service = variables.find((v) => v.name === "service");
  const instance = variables.find((v) => v.name === "instance");
  assert.deepEqual(service?.values.slice().sort(), ["api", "executor", "learner", "rollout"]);
  assert.equal(instance?.values.length, servers.length);
});

test("a panel filtered to one service only sees that service", async () => {
  const samples = await prom.query('rlmesh_process_process_resident_memory_bytes{service=~"rollout", instance=~".*"}');
  assert.equal(samples.length, 1);
  assert.equal(samples[0]?.metric.service, "rollout");
});

test("the harness and Prometheus run within the time budget", () => {
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 60_000, `took ${elapsed} ms`);
});

test("every shipped Prometheus config passes promtool and scrapes each service on its metrics port", async () => {
  const { stdout } = await promisify(execFile)(PROMTOOL_BIN, ["check", "config", ...PROMETHEUS_CONFIGS]);
  assert.equal(stdout.match(/SUCCESS/g)?.length, PROMETHEUS_CONFIGS.length, stdout);
  for (const path of PROMETHEUS_CONFIGS) {
    const blocks = readFileSync(path, "utf8")
      .split(/- job_name: /)
      .slice(1);
    for (const [service, port] of Object.entries(METRICS_PORTS)) {
      const block = blocks.find((b) => b.startsWith(`rlmesh-${service}\n`));
      assert.ok(block, `${path}: no job rlmesh-${service}`);
      assert.ok(block.includes(`port: ${port}`) || block.includes(`:${port}"`), `${path}: rlmesh-${service} not on port ${port}`);
    }
  }
});
