/**
 * renderTraceHtml: one self-contained HTML page (inline CSS and JS, no external assets) that
 * replays decode traces like the Dream-Coder post's figures: every response token sits at its
 * position as a grey mask until the step that committed it, then shows its text coloured by
 * that step; a scrubber (input range) and a play button move through the steps. A pure function
 * (no I/O), shared by `rlmesh trace` and the api's console.
 *
 * The page's state is readable from the DOM once its script ran: `body[data-ready="1"]`,
 * `body[data-step]` (the step shown), `#step-max`, per sample `section.sample[data-tokens]`,
 * `[data-steps]`, `[data-shown]` (tokens committed at or before the step shown) and each token
 * `span.t[data-s]` (its commit step; class `m` while still masked). `#step=K` in the URL opens
 * the page at step K (default: the last step, the finished decode).
 */
import { orderCorrelation, orderLabel, traceSteps, type TraceSample } from "./trace-sample.js";

export interface RenderTraceOptions {
  /** Page title. @defaultValue "Decode trace" */
  title?: string;
  /** A line under the title (model, decoding parameters, job...). */
  subtitle?: string;
  /** Milliseconds per step while playing. @defaultValue 350 */
  playIntervalMs?: number;
}

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** HTML-escapes text for element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c] as string);
}

/** Background colour of a token committed at `step` of `maxSteps` (early = blue, late = orange). */
export function stepColour(step: number, maxSteps: number): string {
  const f = maxSteps <= 1 ? 0 : (step - 1) / (maxSteps - 1);
  const hue = Math.round(225 - 200 * f);
  return `hsl(${hue} 75% 78%)`;
}

function fmt(n: number | undefined, digits: number): string {
  return n === undefined ? "–" : n.toFixed(digits);
}

function tokenSpan(text: string, step: number, pos: number, maxSteps: number, id: number | undefined): string {
  const shown = text === "" ? "∅" : text;
  const title = `position ${pos} · step ${step}${id === undefined ? "" : ` · id ${id}`} · ${JSON.stringify(text)}`;
  const cls = text === "" ? "t sp" : "t";
  return `<span class="${cls}" data-s="${step}" data-p="${pos}" style="--c:${stepColour(step, maxSteps)}" title="${escapeHtml(title)}">${escapeHtml(shown)}</span>`;
}

function sampleSection(s: TraceSample, index: number, maxSteps: number): string {
  const n = s.commitSteps.length;
  const steps = traceSteps(s);
  const r = s.orderCorrelation ?? orderCorrelation(s.commitSteps);
  const facts = [
    s.step !== undefined ? `RL step ${s.step}` : "",
    s.reward !== undefined ? `reward <b class="reward">${fmt(s.reward, 2)}</b>` : "",
    `order r = <b class="corr">${r.toFixed(3)}</b> (${steps > 1 && n > 1 ? orderLabel(r) : "one step"})`,
    `${n} tokens in <b class="nsteps">${steps}</b> steps`,
    s.nfe !== undefined ? `NFE ${s.nfe}` : "",
    s.policyVersion !== undefined ? `policy v${s.policyVersion}` : "",
  ].filter((x) => x !== "");
  const tokens = s.tokenTexts.map((t, p) => tokenSpan(t, s.commitSteps[p] as number, p, maxSteps, s.tokenIds?.[p])).join("");
  const strip = s.commitSteps
    .map((c, p) => `<i style="background:${stepColour(c, maxSteps)}" title="position ${p} · step ${c}"></i>`)
    .join("");
  return `<section class="sample" data-index="${index}" data-tokens="${n}" data-steps="${steps}" data-corr="${r.toFixed(6)}" data-shown="${n}">
<h2>${escapeHtml(s.promptId)} <small>${facts.join(" · ")} · shown <b class="shown">${n}</b>/${n}</small></h2>
${s.promptText !== "" ? `<pre class="prompt">${escapeHtml(s.promptText)}</pre>` : ""}
<pre class="resp">${tokens}</pre>
<div class="strip" title="commit step by position (left = first response token)">${strip}</div>
</section>`;
}

const CSS = `
:root{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#111827;background:#fff}
body{margin:0 auto;max-width:1100px;padding:16px 20px}
h1{font-size:20px;margin:0 0 2px}header p{margin:0 0 10px;color:#4b5563;font-size:13px}
.controls{position:sticky;top:0;background:#fff;padding:8px 0;display:flex;gap:12px;align-items:center;border-bottom:1px solid #e5e7eb;z-index:1}
.controls input[type=range]{flex:1}
.controls button{font-size:14px;padding:4px 12px;min-width:84px;cursor:pointer}
.legend{display:flex;align-items:center;gap:6px;font-size:12px;color:#4b5563}
.legend .bar{width:160px;height:10px;border-radius:3px}
.sample{margin:14px 0;padding:10px 12px;border:1px solid #e5e7eb;border-radius:8px}
.sample h2{font-size:14px;margin:0 0 6px;font-weight:600}.sample h2 small{font-weight:400;color:#4b5563}
pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:13px;line-height:1.7;white-space:pre-wrap;word-break:break-all;margin:0}
pre.prompt{color:#6b7280;border-left:3px solid #e5e7eb;padding-left:8px;margin-bottom:6px;max-height:9em;overflow:auto}
.t{background:var(--c);border-radius:2px;transition:background .15s}
.t.sp{color:#6b7280}
.t.m{background:#d1d5db;color:transparent}
.t.new{outline:2px solid #111827}
.strip{display:flex;height:8px;margin-top:8px}.strip i{flex:1}
`;

/** The page script: scrubber, play button, #step=K. Plain ES2017, no dependencies. */
const SCRIPT = `
(function(){
  var max=+document.getElementById("step-max").textContent;
  var scrub=document.getElementById("scrub"),play=document.getElementById("play"),now=document.getElementById("step-now");
  var tokens=[].slice.call(document.querySelectorAll(".t"));
  var samples=[].slice.call(document.querySelectorAll(".sample"));
  var interval=+document.body.getAttribute("data-interval")||350,timer=null;
  function show(k){
    k=Math.max(0,Math.min(max,k|0));
    scrub.value=String(k);scrub.setAttribute("value",String(k));now.textContent=String(k);document.body.setAttribute("data-step",String(k));
    tokens.forEach(function(t){var s=+t.getAttribute("data-s");t.classList.toggle("m",s>k);t.classList.toggle("new",s===k);});
    samples.forEach(function(sec){var n=sec.querySelectorAll(".t:not(.m)").length;sec.setAttribute("data-shown",String(n));sec.querySelector(".shown").textContent=String(n);});
  }
  function stop(){if(timer!==null){clearInterval(timer);timer=null;}play.textContent="\\u25B6 Play";}
  play.addEventListener("click",function(){
    if(timer!==null){stop();return;}
    if(+scrub.value>=max)show(0);
    play.textContent="\\u23F8 Pause";
    timer=setInterval(function(){var k=+scrub.value+1;show(k);if(k>=max)stop();},interval);
  });
  scrub.addEventListener("input",function(){stop();show(+scrub.value);});
  var m=/step=(\\d+)/.exec(location.hash);
  show(m?+m[1]:max);
  document.body.setAttribute("data-ready","1");
})();
`;

/**
 * The whole page for `traces` (normalizeTraces' output, or any TraceSample[] whose commitSteps
 * and tokenTexts have equal lengths). Throws when there is nothing to render.
 */
export function renderTraceHtml(traces: readonly TraceSample[], opts: RenderTraceOptions = {}): string {
  if (traces.length === 0) throw new Error("renderTraceHtml: no traced samples to render");
  traces.forEach((s, i) => {
    if (s.commitSteps.length !== s.tokenTexts.length) {
      throw new Error(`renderTraceHtml: traces[${i}] has ${s.commitSteps.length} commit steps for ${s.tokenTexts.length} tokens`);
    }
  });
  const maxSteps = Math.max(...traces.map((s) => traceSteps(s)));
  const title = opts.title ?? "Decode trace";
  const legend = `linear-gradient(90deg, ${[0, 0.25, 0.5, 0.75, 1].map((f) => stepColour(1 + f * Math.max(0, maxSteps - 1), maxSteps)).join(", ")})`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body data-interval="${Math.max(16, Math.round(opts.playIntervalMs ?? 350))}" data-step="${maxSteps}">
<header><h1>${escapeHtml(title)}</h1>${opts.subtitle ? `<p>${escapeHtml(opts.subtitle)}</p>` : ""}
<p>${traces.length} sample${traces.length === 1 ? "" : "s"}; tokens appear in the order the decoder committed them, coloured by step. Order r: Pearson correlation of position and commit step (1 = left to right).</p></header>
<div class="controls">
<button id="play" type="button">&#9654; Play</button>
<input id="scrub" type="range" min="0" max="${maxSteps}" value="${maxSteps}" step="1" aria-label="decode step">
<span>step <b id="step-now">${maxSteps}</b> / <b id="step-max">${maxSteps}</b></span>
<span class="legend">step 1 <span class="bar" style="background:${legend}"></span> ${maxSteps}</span>
</div>
${traces.map((s, i) => sampleSection(s, i, maxSteps)).join("\n")}
<script>${SCRIPT}</script>
</body>
</html>
`;
}
