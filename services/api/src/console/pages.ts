// The console's pages, rendered on the server from the job store's data (pure functions).
import type { Job } from "@rlmesh/shared";
import type { TracedSample__Output as TracedSample } from "@rlmesh/shared/gen/rlmesh/v1/TracedSample";
import { escapeHtml, page, pct } from "./html.js";
import { primaryLine, type JobView } from "./console-model.js";
import { lineChart, stackedBars } from "./svg-chart.js";

/** Traced rollouts listed on a job's page (the newest). */
export const MAX_TRACE_ROWS = 20;
const PHASE_COLORS = ["#2f6fde", "#e07b39", "#3a9d5d", "#9b59b6", "#c0392b", "#7f8c8d"];
const LINE_COLORS = ["#2f6fde", "#e07b39", "#3a9d5d", "#9b59b6", "#c0392b", "#16a085"];

const shortState = (s: string) => s.replace(/^JOB_STATE_/, "");
const stateBadge = (s: string) => `<span class="state s-${escapeHtml(shortState(s))}" data-state="${escapeHtml(shortState(s))}">${escapeHtml(shortState(s))}</span>`;
const time = (ms: number) => (ms > 0 ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "–");
const f3 = (x: number) => x.toFixed(3);
const jobHref = (id: string) => `/ui/jobs/${encodeURIComponent(id)}`;

export interface JobsPageOptions {
  state?: string;
  limit: number;
  operator?: boolean;
}

/** All jobs, newest first: state, progress and the latest numbers. */
export function jobsPage(jobs: Job[], o: JobsPageOptions): string {
  const rows = jobs.map((j) => {
    const steps = Number(j.spec?.steps ?? 0);
    return `<tr class="job" data-job="${escapeHtml(j.id)}">
<td><a href="${jobHref(j.id)}">${escapeHtml(j.id)}</a>${j.spec?.name ? `<div class="muted">${escapeHtml(j.spec.name)}</div>` : ""}</td>
<td>${stateBadge(j.state)}</td>
<td class="num step">${Number(j.step)} / ${steps}</td>
<td class="num reward">${f3(Number(j.rewardMean))}</td>
<td class="num job-reward">${f3(Number(j.jobRewardMean))}</td>
<td class="num eval">${pct(Number(j.evalPassAt1))}</td>
<td>${time(Number(j.createdAtMs))}</td><td>${time(Number(j.updatedAtMs))}</td>
<td class="err">${escapeHtml(j.error ?? "")}</td></tr>`;
  });
  const filters = ["", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    .map((s) => `<a href="/ui${s ? `?state=${s}` : ""}"${(o.state ?? "") === s ? ' style="font-weight:700"' : ""}>${s || "all"}</a>`)
    .join(" · ");
  const running = jobs.some((j) => j.state === "JOB_STATE_RUNNING" || j.state === "JOB_STATE_QUEUED");
  return page({
    title: "jobs",
    operator: o.operator,
    refreshS: running ? 5 : undefined,
    body: `<h1>Jobs</h1><p class="muted">${filters}</p>
<table id="jobs"><thead><tr><th>job</th><th>state</th><th class="num">step</th><th class="num">reward (last step)</th><th class="num">reward (job)</th><th class="num">held-out pass@1</th><th>created</th><th>updated</th><th>error</th></tr></thead>
<tbody>${rows.join("") || `<tr><td colspan="9" class="muted" id="no-jobs">no jobs${o.state ? ` in state ${escapeHtml(o.state)}` : ""} yet: submit one with <code>npx rlmesh submit</code></td></tr>`}</tbody></table>`,
  });
}

export interface JobPageOptions {
  operator?: boolean;
  traces: TracedSample[];
  /** Why there are no traces to show (e.g. the api cannot read them), if that is the case. */
  tracesNote?: string;
}

/** One job: its numbers, the held-out curve with 95 % intervals, reward, informative groups, time split, guard, traces. */
export function jobPage(v: JobView, o: JobPageOptions): string {
  const j = v.job;
  const primary = primaryLine(v);
  const lastEval = primary?.points.at(-1);
  const firstEval = primary?.points[0];
  const spec = j.spec;
  const facts = [
    ["state", stateBadge(j.state), "state"],
    ["step", `${Number(j.step)} / ${Number(spec?.steps ?? 0)}`, "step"],
    ["policy version", `v${Number(j.policyVersion)}`, "policy"],
    ["reward (last step)", f3(Number(j.rewardMean)), "reward"],
    ["reward (job, all candidates)", f3(Number(j.jobRewardMean)), "job-reward"],
    ["candidates scored", String(Number(j.candidatesScored)), "candidates"],
    [
      "held-out pass@1",
      lastEval ? `${pct(lastEval.passAt1)} <span class="muted">[${pct(lastEval.ciLow)}, ${pct(lastEval.ciHigh)}]</span>` : "–",
      "eval",
    ],
    ["first eval", firstEval ? pct(firstEval.passAt1) : "–", "eval-first"],
    ["informative groups (mean)", v.steps.length ? pct(v.informativeMean) : "–", "informative"],
    ["steps that updated", `${v.stepsUpdated} / ${v.steps.length}`, "updated"],
    ["guard rollbacks", String(v.guard.filter((g) => g.action === "rollback").length), "rollbacks"],
  ]
    .map(([k, val, id]) => `<div id="fact-${id}"><span>${k}</span><b>${val}</b></div>`)
    .join("");

  const evalSeries = v.evals.map((l, i) => ({
    name: `${l.split} ${l.mode}`,
    color: LINE_COLORS[i % LINE_COLORS.length]!,
    points: l.points.map((p) => ({
      x: p.step,
      y: p.passAt1,
      lo: p.ciLow,
      hi: p.ciHigh,
      label: `${l.split} ${l.mode} step ${p.step}: ${pct(p.passAt1)} [${pct(p.ciLow)}, ${pct(p.ciHigh)}], n ${p.n}, policy v${p.policyVersion}`,
    })),
  }));
  const evalChart = lineChart({ id: "pass-curve", title: "held-out pass@1 (95 % Wilson interval)", series: evalSeries, yMin: 0, yMax: 1, yFormat: pct });
  const rewardChart = lineChart({
    id: "reward-curve",
    title: "mean reward and informative-group fraction per step",
    yMin: 0,
    yMax: 1,
    series: [
      { name: "mean reward", color: LINE_COLORS[0]!, points: v.steps.map((s) => ({ x: s.step, y: s.rewardMean, label: `step ${s.step}: reward ${f3(s.rewardMean)}` })) },
      {
        name: "informative groups",
        color: LINE_COLORS[1]!,
        points: v.steps.map((s) => ({ x: s.step, y: s.informativeFraction, label: `step ${s.step}: informative ${pct(s.informativeFraction)}` })),
      },
    ],
  });
  const timeChart = stackedBars({
    id: "time-split",
    title: "time per step by phase",
    width: 1000,
    names: v.phaseNames,
    colors: PHASE_COLORS,
    bars: v.steps.map((s) => ({ x: s.step, parts: s.phases })),
  });
  const phaseMeans = v.phaseNames.length
    ? `<p id="phase-means">mean per step: ${v.phaseNames.map((n) => `<span data-phase="${escapeHtml(n)}">${escapeHtml(n)} <b>${v.phaseMeans[n]!.toFixed(2)} s</b></span>`).join(" · ")}</p>`
    : "";

  const evalRows = v.evals.flatMap((l) =>
    l.points.map(
      (p) =>
        `<tr class="eval-row" data-split="${escapeHtml(l.split)}" data-mode="${escapeHtml(l.mode)}" data-step="${p.step}"><td>${escapeHtml(l.split)}</td><td>${escapeHtml(l.mode)}</td><td class="num">${p.step}</td><td class="num pass">${pct(p.passAt1)}</td><td class="num ci">[${pct(p.ciLow)}, ${pct(p.ciHigh)}]</td><td class="num">${p.n}</td><td class="num">${p.responses}</td><td class="num">v${p.policyVersion}</td></tr>`,
    ),
  );
  const stepRows = [...v.steps]
    .reverse()
    .slice(0, 50)
    .map(
      (s) =>
        `<tr class="step-row" data-step="${s.step}"><td class="num">${s.step}</td><td class="num reward">${f3(s.rewardMean)}</td><td class="num">${pct(s.passRate)}</td><td class="num informative">${pct(s.informativeFraction)}</td><td class="num">${s.candidates}</td><td class="num">${f3(s.loss)}${s.skipped ? ' <span class="muted">(skipped)</span>' : ""}</td><td class="num">v${s.policyVersion}</td>${v.phaseNames.map((n) => `<td class="num">${(s.phases[n] ?? 0).toFixed(2)}</td>`).join("")}</tr>`,
    );
  const guardRows = v.guard.map(
    (g) =>
      `<tr class="guard-row" data-action="${escapeHtml(g.action)}"><td class="num">${g.step}</td><td>${escapeHtml(g.action)}</td><td>${g.source === "step" ? "step reward" : "held-out pass@1"}</td><td>${escapeHtml(g.reason)}</td><td>${time(g.timeMs)}</td></tr>`,
  );
  const traceRows = [...o.traces]
    .reverse()
    .slice(0, MAX_TRACE_ROWS)
    .map((t, i) => {
      const index = o.traces.length - 1 - i;
      return `<tr class="trace-row" data-step="${Number(t.step)}"><td class="num">${Number(t.step)}</td><td>${escapeHtml(t.promptId)}</td><td class="num reward">${Number(t.reward).toFixed(2)}</td><td class="num">${Number(t.orderCorrelation).toFixed(3)}</td><td class="num">${t.tokenTexts.length}</td><td class="num">${Number(t.nfe)}</td><td class="num">v${Number(t.policyVersion)}</td><td><a href="${jobHref(j.id)}/traces/${index}">open in trace viewer</a></td></tr>`;
    });
  const traceNote =
    o.tracesNote ??
    (Number(spec?.traceSamplesPerStep ?? 0) > 0 ? "no traced rollouts stored yet" : "this job keeps no traces (spec.trace_samples_per_step is 0)");

  const live = j.state === "JOB_STATE_RUNNING" || j.state === "JOB_STATE_QUEUED";
  const cancel =
    o.operator && live
      ? `<form method="post" action="${jobHref(j.id)}/cancel" style="display:inline"><button type="submit">cancel job</button></form>`
      : "";
  return page({
    title: j.id,
    operator: o.operator,
    refreshS: live ? 5 : undefined,
    body: `<h1 id="job-id" data-job="${escapeHtml(j.id)}">${escapeHtml(j.id)}${spec?.name ? ` <span class="muted">${escapeHtml(spec.name)}</span>` : ""} ${cancel}</h1>
${j.error ? `<p class="err" id="job-error">${escapeHtml(j.error)}</p>` : ""}
<div class="card facts" id="facts">${facts}</div>
<div class="grid2"><div class="card">${evalChart}</div><div class="card">${rewardChart}</div></div>
<div class="card">${timeChart}${phaseMeans}</div>
<h2>Held-out evals</h2>
<table id="evals"><thead><tr><th>split</th><th>mode</th><th class="num">step</th><th class="num">pass@1</th><th class="num">95 % interval</th><th class="num">prompts</th><th class="num">responses</th><th class="num">policy</th></tr></thead>
<tbody>${evalRows.join("") || `<tr><td colspan="8" class="muted">no eval yet${spec?.evalDataset?.path ? "" : " (the spec has no eval_dataset)"}</td></tr>`}</tbody></table>
<h2>Collapse guard</h2>
<table id="guard"><thead><tr><th class="num">step</th><th>action</th><th>signal</th><th>reason</th><th>time</th></tr></thead>
<tbody>${guardRows.join("") || `<tr><td colspan="5" class="muted" id="no-rollbacks">no rollback: the guard never acted</td></tr>`}</tbody></table>
<h2>Recent traced rollouts <span class="muted">(newest ${MAX_TRACE_ROWS} of ${o.traces.length})</span></h2>
<table id="traces"><thead><tr><th class="num">step</th><th>prompt</th><th class="num">reward</th><th class="num">order r</th><th class="num">tokens</th><th class="num">NFE</th><th class="num">policy</th><th></th></tr></thead>
<tbody>${traceRows.join("") || `<tr><td colspan="8" class="muted">${escapeHtml(traceNote)}</td></tr>`}</tbody></table>
<h2>Steps <span class="muted">(newest 50)</span></h2>
<table id="steps"><thead><tr><th class="num">step</th><th class="num">mean reward</th><th class="num">pass rate</th><th class="num">informative</th><th class="num">candidates</th><th class="num">loss</th><th class="num">policy</th>${v.phaseNames.map((n) => `<th class="num">${escapeHtml(n)} s</th>`).join("")}</tr></thead>
<tbody>${stepRows.join("") || `<tr><td colspan="${7 + v.phaseNames.length}" class="muted">no step completed yet</td></tr>`}</tbody></table>
${v.notices.length ? `<h2>Warnings</h2><div class="card" id="notices">${v.notices.map((n) => `<pre class="${n.level === "error" ? "err" : "warn"}">${time(n.timeMs)} ${escapeHtml(n.message)}</pre>`).join("")}</div>` : ""}
<p class="muted">created ${time(Number(j.createdAtMs))} · updated ${time(Number(j.updatedAtMs))} · ${Number(j.eventCount)} events · JSON: <a href="/ui/api/jobs/${encodeURIComponent(j.id)}">/ui/api/jobs/${escapeHtml(j.id)}</a></p>`,
  });
}
