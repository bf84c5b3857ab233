/**
 * A still of a rendered trace page with headless Chromium (Debian's `chromium`, or
 * RLMESH_CHROMIUM): `--screenshot` of the page opened at `#step=K` after its script ran.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { TraceSample } from "@rlmesh/shared/trace/index";

export const PNG_WIDTH = 1100;

/** The Chromium binary, or an error that says how to get one. */
export function chromiumBinary(): string {
  const bin = process.env.RLMESH_CHROMIUM || "chromium";
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 30_000 });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `--png needs headless Chromium, which was not found (${bin}: ${probe.error?.message ?? probe.stderr.trim()}): ` +
        "apt-get install -y chromium, or set RLMESH_CHROMIUM to a Chromium binary",
    );
  }
  return bin;
}

/** About how tall the page is at `width` (the screenshot is of the window, so it must fit). */
export function estimatePageHeight(traces: readonly TraceSample[], width = PNG_WIDTH): number {
  const charsPerLine = Math.max(20, Math.floor((Math.min(width, 1100) - 90) / 7.9));
  const lines = (text: string) => text.split("\n").reduce((a, l) => a + Math.max(1, Math.ceil(l.length / charsPerLine)), 0);
  let h = 190;
  for (const s of traces) {
    h += 80 + Math.min(6, s.promptText ? lines(s.promptText) : 0) * 22 + lines(s.tokenTexts.join("")) * 22.5;
  }
  return Math.min(8000, Math.ceil(h + 30));
}

/** Writes a PNG of the page `htmlFile` at decode step `step` (undefined = the last). */
export function renderPng(htmlFile: string, pngFile: string, opts: { step?: number; width?: number; height: number }): void {
  const bin = chromiumBinary();
  const profile = mkdtempSync(join(tmpdir(), "rlmesh-trace-chromium-"));
  const url = pathToFileURL(resolve(htmlFile)).href + (opts.step !== undefined ? `#step=${opts.step}` : "");
  try {
    const r = spawnSync(
      bin,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        `--window-size=${opts.width ?? PNG_WIDTH},${opts.height}`,
        "--virtual-time-budget=2000",
        `--screenshot=${resolve(pngFile)}`,
        url,
      ],
      { encoding: "utf8", timeout: 90_000 },
    );
    if (r.error || r.status !== 0 || !existsSync(pngFile) || statSync(pngFile).size === 0) {
      throw new Error(`chromium could not render ${pngFile} (exit ${r.status ?? r.error?.message}): ${(r.stderr ?? "").trim().split("\n").slice(-3).join(" | ")}`);
    }
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
