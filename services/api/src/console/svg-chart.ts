// Inline SVG charts for the console, drawn on the server: nothing to fetch, no script needed.
import { escapeHtml } from "./html.js";

export interface SeriesPoint {
  x: number;
  y: number;
  /** An interval around y (drawn as a band and a whisker). */
  lo?: number;
  hi?: number;
  /** Tooltip text. */
  label?: string;
}

export interface Series {
  name: string;
  color: string;
  points: SeriesPoint[];
}

export interface LineChartOptions {
  id: string;
  title: string;
  series: Series[];
  yMin?: number;
  yMax?: number;
  yFormat?: (y: number) => string;
  xLabel?: string;
  width?: number;
  height?: number;
}

const PAD = { left: 52, right: 16, top: 28, bottom: 36 };

function ticks(lo: number, hi: number, n: number): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toFixed(10)));
  return out;
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));

/** A line chart over steps; series with lo/hi get a shaded band (e.g. a 95 % interval). */
export function lineChart(o: LineChartOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 240;
  const yf = o.yFormat ?? fmt;
  const all = o.series.flatMap((s) => s.points);
  const xs = all.map((p) => p.x);
  let x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  if (x1 === x0) x1 = x0 + 1;
  const ys = all.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]);
  let y0 = o.yMin ?? (ys.length ? Math.min(...ys) : 0);
  let y1 = o.yMax ?? (ys.length ? Math.max(...ys) : 1);
  if (y1 === y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  if (x0 > 0 && xs.length > 1) x0 = Math.min(x0, 0);
  const px = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [];
  parts.push(`<svg id="${escapeHtml(o.id)}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(o.title)}">`);
  parts.push(`<text x="${PAD.left}" y="16" class="chart-title">${escapeHtml(o.title)}</text>`);
  for (const t of ticks(y0, y1, 4)) {
    parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${PAD.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end" class="tick">${escapeHtml(yf(t))}</text>`);
  }
  for (const t of ticks(x0, x1, Math.min(8, Math.max(1, Math.round(x1 - x0))))) {
    if (!Number.isInteger(t)) continue;
    parts.push(`<text x="${px(t).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle" class="tick">${t}</text>`);
  }
  parts.push(`<text x="${(W + PAD.left) / 2}" y="${H - 4}" text-anchor="middle" class="axis-label">${escapeHtml(o.xLabel ?? "step")}</text>`);
  parts.push(`<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${H - PAD.bottom}" class="axis"/>`);
  parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${H - PAD.bottom}" y2="${H - PAD.bottom}" class="axis"/>`);
  o.series.forEach((s, si) => {
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    const banded = pts.filter((p) => p.lo !== undefined && p.hi !== undefined);
    if (banded.length > 1) {
      const top = banded.map((p) => `${px(p.x).toFixed(1)},${py(p.hi!).toFixed(1)}`);
      const bottom = banded.map((p) => `${px(p.x).toFixed(1)},${py(p.lo!).toFixed(1)}`).reverse();
      parts.push(`<polygon class="band" points="${[...top, ...bottom].join(" ")}" fill="${s.color}" fill-opacity="0.15"/>`);
    }
    for (const p of banded)
      parts.push(
        `<line class="whisker" x1="${px(p.x).toFixed(1)}" x2="${px(p.x).toFixed(1)}" y1="${py(p.lo!).toFixed(1)}" y2="${py(p.hi!).toFixed(1)}" stroke="${s.color}"/>`,
      );
    if (pts.length > 1)
      parts.push(`<polyline class="line" fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ")}"/>`);
    for (const p of pts) {
      const attrs = `data-series="${escapeHtml(s.name)}" data-x="${p.x}" data-y="${p.y}"${p.lo !== undefined ? ` data-lo="${p.lo}" data-hi="${p.hi}"` : ""}`;
      parts.push(
        `<circle class="point" cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${s.color}" ${attrs}><title>${escapeHtml(p.label ?? `${s.name} step ${p.x}: ${yf(p.y)}`)}</title></circle>`,
      );
    }
    // Legend.
    const lx = W - PAD.right - 150;
    const ly = 14 + si * 14;
    parts.push(`<rect x="${lx}" y="${ly - 8}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${ly + 1}" class="legend">${escapeHtml(s.name)}</text>`);
  });
  if (all.length === 0) parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="empty">no data yet</text>`);
  parts.push(`</svg>`);
  return parts.join("");
}

export interface StackedBarsOptions {
  id: string;
  title: string;
  names: string[];
  colors: string[];
  bars: { x: number; parts: Record<string, number> }[];
  unit?: string;
  width?: number;
  height?: number;
}

/** One stacked bar per step (e.g. seconds per phase). */
export function stackedBars(o: StackedBarsOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 220;
  const unit = o.unit ?? "s";
  const totals = o.bars.map((b) => o.names.reduce((a, n) => a + (b.parts[n] ?? 0), 0));
  const yMax = Math.max(1e-9, ...totals);
  const innerW = W - PAD.left - PAD.right;
  const bw = o.bars.length ? Math.max(1, Math.min(40, (innerW / o.bars.length) * 0.8)) : 0;
  const px = (i: number) => PAD.left + ((i + 0.5) / Math.max(1, o.bars.length)) * innerW;
  const py = (y: number) => H - PAD.bottom - (y / yMax) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [];
  parts.push(`<svg id="${escapeHtml(o.id)}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(o.title)}">`);
  parts.push(`<text x="${PAD.left}" y="16" class="chart-title">${escapeHtml(o.title)}</text>`);
  for (const t of ticks(0, yMax, 4)) {
    parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${PAD.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end" class="tick">${fmt(t)} ${unit}</text>`);
  }
  const labelEvery = Math.max(1, Math.ceil(o.bars.length / 10));
  o.bars.forEach((b, i) => {
    let acc = 0;
    o.names.forEach((n, ni) => {
      const v = b.parts[n] ?? 0;
      if (v <= 0) return;
      parts.push(
        `<rect class="bar" data-x="${b.x}" data-phase="${escapeHtml(n)}" data-value="${v}" x="${(px(i) - bw / 2).toFixed(1)}" y="${py(acc + v).toFixed(1)}" width="${bw.toFixed(1)}" height="${(py(acc) - py(acc + v)).toFixed(1)}" fill="${o.colors[ni % o.colors.length]}"><title>step ${b.x} ${escapeHtml(n)}: ${v.toFixed(3)} ${unit}</title></rect>`,
      );
      acc += v;
    });
    if (i % labelEvery === 0) parts.push(`<text x="${px(i).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle" class="tick">${b.x}</text>`);
  });
  parts.push(`<text x="${(W + PAD.left) / 2}" y="${H - 4}" text-anchor="middle" class="axis-label">step</text>`);
  o.names.forEach((n, ni) => {
    const lx = W - PAD.right - (o.names.length - ni) * 80;
    parts.push(`<rect x="${lx}" y="6" width="10" height="10" fill="${o.colors[ni % o.colors.length]}"/><text x="${lx + 14}" y="15" class="legend">${escapeHtml(n)}</text>`);
  });
  if (o.bars.length === 0) parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="empty">no steps yet</text>`);
  parts.push(`</svg>`);
  return parts.join("");
}
