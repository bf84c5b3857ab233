// Lints the Grafana dashboard and its provisioning: a dashboard that imports cleanly into any
// Grafana, whose panels all query the provisioned datasource and only catalogue metrics.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import {
  DASHBOARD_PATH,
  DATASOURCE_PROVISIONING_PATH,
  DATASOURCE_UID,
  allPanels,
  loadCatalogue,
  loadDashboard,
  metricNamesInExpr,
  panelQueries,
  parseLabelValues,
  seriesNames,
  substituteVariables,
  variableQuery,
} from "./prometheus-harness.js";

const dashboardText = readFileSync(DASHBOARD_PATH, "utf8");
const dashboard = loadDashboard();
const catalogue = loadCatalogue();

const uidOf = (ds: unknown): string | undefined => (typeof ds === "object" && ds !== null && "uid" in ds ? String(ds.uid) : undefined);

test("the datasource is provisioned under the uid the dashboard uses", () => {
  const yml = readFileSync(DATASOURCE_PROVISIONING_PATH, "utf8");
  assert.match(yml, new RegExp(`^\\s*uid:\\s*${DATASOURCE_UID}\\s*$`, "m"));
  assert.match(yml, /^\s*type:\s*prometheus\s*$/m);
});

test("the dashboard is a Grafana JSON model: uid, title, schemaVersion, panels with grid positions", () => {
  assert.equal(typeof dashboard.uid, "string");
  assert.equal(typeof dashboard.title, "string");
  assert.ok(typeof dashboard.schemaVersion === "number" && dashboard.schemaVersion >= 30, "schemaVersion");
  assert.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0, "panels");
  for (const p of allPanels(dashboard)) {
    const gp = (p as { gridPos?: { h: number; w: number; x: number; y: number } }).gridPos;
    assert.ok(gp && [gp.h, gp.w, gp.x, gp.y].every(Number.isInteger), `panel ${p.id} gridPos`);
    assert.ok(gp.x + gp.w <= 24, `panel ${p.id} "${p.title}" is wider than the 24-column grid`);
    assert.equal(typeof p.type, "string", `panel ${p.id} type`);
  }
});

test("panel ids are unique integers", () => {
  const ids = allPanels(dashboard).map((p) => p.id);
  for (const id of ids) assert.ok(Number.isInteger(id), `panel id ${String(id)}`);
  assert.equal(new Set(ids).size, ids.length, `duplicate panel ids in ${JSON.stringify(ids)}`);
});

test("no ${DS_*} import placeholders; every panel, target and variable uses the provisioned uid", () => {
  assert.ok(!dashboardText.includes("${DS_"), "dashboard contains ${DS_");
  assert.ok(!/"__inputs"/.test(dashboardText), "dashboard has __inputs (an export for sharing, not provisioning)");
  for (const p of allPanels(dashboard)) {
    if (p.type === "row") continue;
    assert.equal(uidOf(p.datasource), DATASOURCE_UID, `panel ${p.id} "${p.title}" datasource`);
    for (const t of p.targets ?? []) {
      if (t.datasource !== undefined) assert.equal(uidOf(t.datasource), DATASOURCE_UID, `panel ${p.id} target ${t.refId} datasource`);
    }
  }
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type === "query") assert.equal(uidOf(v.datasource), DATASOURCE_UID, `variable ${v.name} datasource`);
  }
});

test("every non-row panel has targets, each with a refId and an expr", () => {
  for (const p of allPanels(dashboard)) {
    if (p.type === "row") continue;
    assert.ok((p.targets ?? []).length > 0, `panel ${p.id} "${p.title}" has no targets`);
    const refIds = (p.targets ?? []).map((t) => t.refId);
    assert.equal(new Set(refIds).size, refIds.length, `panel ${p.id} duplicate refIds`);
    for (const t of p.targets ?? []) {
      assert.ok(t.refId, `panel ${p.id} target without refId`);
      assert.ok(typeof t.expr === "string" && t.expr.trim() !== "", `panel ${p.id} target ${t.refId} has no expr`);
    }
  }
});

test("every metric an expr or variable uses is in the metric catalogue", () => {
  const known = seriesNames(catalogue);
  const variableSelectors = (dashboard.templating?.list ?? []).map((v) => {
    const query = variableQuery(v);
    const lv = parseLabelValues(query);
    assert.ok(lv, `variable ${v.name}: only label_values(...) queries are used, got ${query}`);
    return lv.selector ?? "";
  });
  const exprs = [...panelQueries(dashboard).map((q) => q.expr), ...variableSelectors];
  const unknown: string[] = [];
  for (const expr of exprs) for (const name of metricNamesInExpr(expr)) if (!known.has(name)) unknown.push(`${name} in ${expr}`);
  assert.deepEqual(unknown, []);
});

test("every catalogue metric is shown by some panel", () => {
  const used = new Set(panelQueries(dashboard).flatMap((q) => metricNamesInExpr(q.expr)));
  const missing = [...catalogue.metrics, ...catalogue.processMetrics]
    .filter((m) => (m.type === "histogram" ? !["_bucket", "_sum", "_count"].some((s) => used.has(m.name + s)) : !used.has(m.name)))
    .map((m) => m.name);
  assert.deepEqual(missing, []);
});

test("panels are templated by the service and instance variables", () => {
  const names = (dashboard.templating?.list ?? []).map((v) => v.name);
  assert.ok(names.includes("service") && names.includes("instance"), `variables: ${names.join(", ")}`);
  for (const q of panelQueries(dashboard)) {
    assert.match(q.expr, /service=~"\$service"/, `panel ${q.panelId} ${q.refId}: ${q.expr}`);
  }
});

test("metric names are parsed out of PromQL, and variables substituted for evaluation", () => {
  assert.deepEqual(
    metricNamesInExpr(
      'histogram_quantile(0.95, sum by (le, phase) (rate(rlmesh_job_phase_duration_seconds_bucket{service=~"$service"}[$__rate_interval])))',
    ),
    ["rlmesh_job_phase_duration_seconds_bucket"],
  );
  assert.deepEqual(metricNamesInExpr("sum(rate(a_total[1m])) / on (x) group_left sum(b) and up == 1"), ["a_total", "b", "up"]);
  assert.equal(
    substituteVariables('rate(x{service=~"$service", instance=~"${instance}"}[$__rate_interval])', { rateInterval: "1m" }),
    'rate(x{service=~".*", instance=~".*"}[1m])',
  );
});

test("the dashboard JSON is what deploy/grafana/build-dashboard.mjs builds (edit the script, then run it)", async () => {
  const builder = join(REPO_ROOT, "deploy", "grafana", "build-dashboard.mjs");
  const { buildDashboard } = (await import(builder)) as { buildDashboard: () => unknown };
  assert.deepEqual(dashboard, JSON.parse(JSON.stringify(buildDashboard())));
});
