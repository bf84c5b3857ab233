// The console's page frame: escaping, one inline stylesheet, the error page. No external assets.

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** HTML-escapes text for element content and attribute values. */
export function escapeHtml(s: string): string {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]!);
}

/** A fraction as a percentage with one decimal ("35.0 %"). */
export const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;

const STYLE = `
:root{--fg:#1d2330;--muted:#667085;--line:#d0d5dd;--bg:#f7f8fa;--card:#fff;--accent:#2f6fde}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:18px;align-items:center;padding:10px 20px;background:#1d2330;color:#fff}
header a{color:#cfd8ea;text-decoration:none}header a:hover{color:#fff}
header .brand{font-weight:700;color:#fff;margin-right:8px}
header .ro{margin-left:auto;font-size:12px;color:#9aa4b2}
main{padding:18px 20px;max-width:1400px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin-bottom:14px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(600px,1fr));gap:14px}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.s-RUNNING{background:#dbeafe;color:#1e40af}.s-QUEUED{background:#eef2f6;color:#475467}
.s-SUCCEEDED{background:#dcfce7;color:#166534}.s-FAILED{background:#fee2e2;color:#991b1b}.s-CANCELLED{background:#fef3c7;color:#92400e}
.facts{display:flex;flex-wrap:wrap;gap:10px 26px}.facts div b{display:block;font-size:18px}
.facts div span{color:var(--muted);font-size:12px}
.muted{color:var(--muted)}.err{color:#991b1b}.warn{color:#92400e}
svg.chart{max-width:100%;height:auto;background:#fff}
svg .grid{stroke:#eef0f3}svg .axis{stroke:#98a2b3}svg .tick,svg .legend,svg .axis-label{font-size:11px;fill:#475467}
svg .chart-title{font-size:13px;font-weight:600;fill:#1d2330}svg .empty{fill:#98a2b3;font-size:13px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{white-space:pre-wrap;margin:0}
.error-page{max-width:760px;margin:40px auto}.error-page .code{font-size:40px;font-weight:700;color:#991b1b}
`;

export interface PageOptions {
  title: string;
  body: string;
  /** Seconds after which the browser reloads (a running job's page). */
  refreshS?: number;
  /** Whether the operator token was presented (shown in the header). */
  operator?: boolean;
}

export function page(o: PageOptions): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
${o.refreshS ? `<meta http-equiv="refresh" content="${o.refreshS}">` : ""}
<title>${escapeHtml(o.title)} · rlmesh console</title><style>${STYLE}</style></head>
<body><header><span class="brand">rlmesh</span><a href="/ui">jobs</a><a href="/ui/queues">reward queue</a>
<span class="ro">${o.operator ? "operator" : "read-only"}</span></header>
<main>${o.body}</main></body></html>`;
}

/** A page for an error: the status, what went wrong, and where to go instead. Never blank. */
export function errorPage(status: number, title: string, message: string): string {
  return page({
    title: `${status} ${title}`,
    body: `<div class="error-page card" id="error" data-status="${status}"><div class="code">${status}</div>
<h1>${escapeHtml(title)}</h1><p class="message">${escapeHtml(message)}</p><p><a href="/ui">← all jobs</a></p></div>`,
  });
}
