/**
 * Prometheus harness for deploy tests: reads the Grafana dashboard and the metric catalogue,
 * starts a real `prometheus` binary on a free loopback port scraping given loopback targets,
 * and evaluates every dashboard panel's PromQL through Prometheus's HTTP API.
 *
 * Used by deploy-dashboard.test.ts (lint), deploy-prometheus.test.ts (against small exporters)
 * and meant for a test that points it at the real local mesh during a short job.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

export const DASHBOARD_PATH = join(REPO_ROOT, "deploy", "grafana", "dashboards", "rlmesh.json");
export const CATALOGUE_PATH = join(REPO_ROOT, "deploy", "grafana", "metric-catalogue.json");
export const DATASOURCE_PROVISIONING_PATH = join(REPO_ROOT, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml");
export const PROMETHEUS_BIN = process.env.RLMESH_PROMETHEUS_BIN ?? "/usr/bin/prometheus";
/** The uid the datasource is provisioned with; every panel must refer to it. */
export const DATASOURCE_UID = "rlmesh-prometheus";

// ---------------------------------------------------------------- catalogue and dashboard

export type MetricType = "counter" | "gauge" | "histogram";
export interface CatalogueMetric {
  name: string;
  type: MetricType;
  service?: string;
  labels?: string[];
  help: string;
}
export interface Catalogue {
  metrics: CatalogueMetric[];
  processMetrics: CatalogueMetric[];
}

export function loadCatalogue(path = CATALOGUE_PATH): Catalogue {
  return JSON.parse(readFileSync(path, "utf8")) as Catalogue;
}

/** Every series name a query may use: the catalogue's names plus a histogram's _bucket/_sum/_count. */
export function seriesNames(catalogue: Catalogue): Set<string> {
  const names = new Set<string>();
  for (const m of [...catalogue.metrics, ...catalogue.processMetrics]) {
    if (m.type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(m.name + suffix);
    else names.add(m.name);
  }
  return names;
}

export interface DashboardTarget {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string } | string | null;
}
export interface DashboardPanel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string } | string | null;
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
}
export interface DashboardVariable {
  name: string;
  type: string;
  datasource?: { type?: string; uid?: string } | string | null;
  query?: string | { query?: string };
  definition?: string;
  allValue?: string;
}
export interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels?: DashboardPanel[];
  templating?: { list?: DashboardVariable[] };
}

export function loadDashboard(path = DASHBOARD_PATH): Dashboard {
  return JSON.parse(readFileSync(path, "utf8")) as Dashboard;
}

/** All panels, including those nested in collapsed rows. */
export function allPanels(dashboard: Dashboard): DashboardPanel[] {
  const out: DashboardPanel[] = [];
  const walk = (panels: DashboardPanel[] | undefined): void => {
    for (const p of panels ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

export interface PanelQuery {
  panelId: number | undefined;
  panelTitle: string;
  refId: string;
  expr: string;
}

export function panelQueries(dashboard: Dashboard): PanelQuery[] {
  return allPanels(dashboard).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panelId: p.id, panelTitle: p.title ?? "", refId: t.refId ?? "", expr: t.expr ?? "" })),
  );
}

export function variableQuery(v: DashboardVariable): string {
  return typeof v.query === "string" ? v.query : (v.query?.query ?? v.definition ?? "");
}

/** Splits Grafana's `label_values(selector, label)` / `label_values(label)`; undefined for other queries. */
export function parseLabelValues(query: string): { selector: string | undefined; label: string } | undefined {
  const m = /^label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)$/.exec(query.trim());
  return m ? { selector: m[1], label: m[2]! } : undefined;
}

const PROMQL_KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
]);

/**
 * Metric names a PromQL expression selects: identifiers that are not functions (followed by
 * "("), keywords, label names (inside {...} or a by/without/on/ignoring list) or numbers.
 */
export function metricNamesInExpr(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names: string[] = [];
  for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = m[0];
    const rest = stripped.slice((m.index ?? 0) + name.length);
    if (/^\s*\(/.test(rest) || PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    names.push(name);
  }
  return [...new Set(names)];
}

/** Grafana template variables replaced for evaluation outside Grafana. */
export interface SubstituteOptions {
  /** Value per variable name (default: ".*", i.e. "All"). */
  vars?: Record<string, string>;
  /** What $__rate_interval / $__interval become (default "30s"). */
  rateInterval?: string;
}

export function substituteVariables(expr: string, opts: SubstituteOptions = {}): string {
  const rate = opts.rateInterval ?? "30s";
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}/g, rate)
    .replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (_all, a?: string, b?: string) => opts.vars?.[(a ?? b)!] ?? ".*");
}

// ---------------------------------------------------------------- a real Prometheus

export interface ScrapeJob {
  job: string;
  /** host:port on loopback. */
  targets: string[];
}

export interface PrometheusInstance {
  url: string;
  port: number;
  dataDir: string;
  output(): string;
  /** Instant query; throws on an API error (bad PromQL included). */
  query(expr: string): Promise<PromVectorSample[]>;
  /** Values of a label over the series that match `match` (for label_values(...) variables). */
  labelValues(label: string, match?: string): Promise<string[]>;
  /** Resolves once every target has been scraped successfully `scrapes` times. */
  waitForScrapes(scrapes: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface PromVectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

interface ApiResponse<T> {
  status: "success" | "error";
  data: T;
  errorType?: string;
  error?: string;
}

export function prometheusConfig(jobs: ScrapeJob[], scrapeIntervalS: number): string {
  // JSON is valid YAML: no YAML library needed to write the config.
  return JSON.stringify({
    global: { scrape_interval: `${scrapeIntervalS}s`, scrape_timeout: `${scrapeIntervalS}s`, evaluation_interval: `${scrapeIntervalS}s` },
    scrape_configs: jobs.map((j) => ({ job_name: j.job, static_configs: [{ targets: j.targets }] })),
  });
}

export interface StartPrometheusOptions {
  jobs: ScrapeJob[];
  /** Scrape interval in seconds (default 1: rates need two samples inside the window). */
  scrapeIntervalS?: number;
  readyTimeoutMs?: number;
}

/** Starts `prometheus` on a free loopback port with a generated config; fails loudly if the binary is missing. */
export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusInstance> {
  if (!existsSync(PROMETHEUS_BIN)) {
    throw new Error(`${PROMETHEUS_BIN} not found: install Debian's prometheus package (scripts/setup.sh does)`);
  }
  for (const j of opts.jobs) {
    for (const t of j.targets) {
      if (!/^(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(t)) throw new Error(`scrape target ${t} is not on loopback`);
    }
  }
  const interval = opts.scrapeIntervalS ?? 1;
  const dataDir = mkdtempSync(join(tmpdir(), "rlmesh-prom-"));
  const configPath = join(dataDir, "prometheus.yml");
  writeFileSync(configPath, prometheusConfig(opts.jobs, interval));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${join(dataDir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(url + path);
    const body = (await res.json()) as ApiResponse<T>;
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.errorType ?? ""} ${body.error ?? res.status}`);
    return body.data;
  };

  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
    const killTimer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killTimer);
    rmSync(dataDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited early (${proc.exitCode}):\n${out}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after ${opts.readyTimeoutMs ?? 15_000} ms:\n${out}`);
    }
    await sleep(100);
  }

  const expectedTargets = opts.jobs.reduce((n, j) => n + j.targets.length, 0);
  return {
    url,
    port,
    dataDir,
    output: () => out,
    query: async (expr) => {
      const data = await api<{ resultType: string; result: PromVectorSample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
      return data.resultType === "vector" ? data.result : [];
    },
    labelValues: (label, match) =>
      api<string[]>(`/api/v1/label/${encodeURIComponent(label)}/values${match ? `?match[]=${encodeURIComponent(match)}` : ""}`),
    waitForScrapes: async (scrapes, timeoutMs = 20_000) => {
      const until = Date.now() + timeoutMs;
      let last = "";
      while (Date.now() < until) {
        // count_over_time(up[..]) counts the scrapes of each target; all must be up.
        const counts = await api<{ result: PromVectorSample[] }>(
          `/api/v1/query?query=${encodeURIComponent(`count_over_time(up[5m]) and on (job, instance) up == 1`)}`,
        );
        const ok = counts.result.filter((s) => Number(s.value[1]) >= scrapes).length;
        last = `${ok}/${expectedTargets} targets scraped ${scrapes}x`;
        if (ok >= expectedTargets) return;
        await sleep(250);
      }
      const targets = await api<{ activeTargets: { scrapeUrl: string; health: string; lastError: string }[] }>("/api/v1/targets");
      throw new Error(
        `${last} after ${timeoutMs} ms: ${JSON.stringify(targets.activeTargets.map((t) => [t.scrapeUrl, t.health, t.lastError]))}`,
      );
    },
    stop,
  };
}

// ---------------------------------------------------------------- evaluating the dashboard

export interface QueryResult {
  panelId: number | undefined;
  panelTitle: string;
  refId: string;
  expr: string;
  evaluated: string;
  samples: number;
  error?: string;
}

/** Evaluates every panel query (variables substituted) and every query variable. */
export async function evaluateDashboard(
  prom: PrometheusInstance,
  dashboard: Dashboard,
  opts: SubstituteOptions = {},
): Promise<{ panels: QueryResult[]; variables: { name: string; query: string; values: string[]; error?: string }[] }> {
  const panels: QueryResult[] = [];
  for (const q of panelQueries(dashboard)) {
    const evaluated = substituteVariables(q.expr, opts);
    try {
      const samples = await prom.query(evaluated);
      panels.push({ ...q, evaluated, samples: samples.length });
    } catch (err) {
      panels.push({ ...q, evaluated, samples: 0, error: (err as Error).message });
    }
  }
  const variables = [];
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const query = variableQuery(v);
    const lv = parseLabelValues(query);
    if (!lv) {
      variables.push({ name: v.name, query, values: [], error: "only label_values(...) variables are supported" });
      continue;
    }
    try {
      const match = lv.selector ? substituteVariables(lv.selector, opts) : undefined;
      variables.push({ name: v.name, query, values: await prom.labelValues(lv.label, match) });
    } catch (err) {
      variables.push({ name: v.name, query, values: [], error: (err as Error).message });
    }
  }
  return { panels, variables };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
