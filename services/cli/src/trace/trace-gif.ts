/**
 * An animated GIF of a trace page: Chromium stills of the page at evenly spaced steps (0 = all
 * masked, through the finished decode), decoded and written as one looping GIF.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderPng } from "./chromium-still.js";
import { encodeGif, type GifFrame } from "./gif-encode.js";
import { decodePng } from "./png-decode.js";

/** Up to `frames` steps from 0 to maxSteps, evenly spaced, both ends included. */
export function gifSteps(maxSteps: number, frames: number): number[] {
  if (frames < 2 || maxSteps < 1) return [maxSteps];
  const n = Math.min(frames, maxSteps + 1);
  return [...new Set(Array.from({ length: n }, (_, i) => Math.round((i * maxSteps) / (n - 1))))];
}

export interface GifOptions {
  maxSteps: number;
  frames: number;
  delayMs: number;
  /** How long the finished decode shows before the loop restarts. @defaultValue 2000 */
  holdMs?: number;
  width: number;
  height: number;
}

/** Writes `gifFile`; returns the steps it shows. */
export function renderGif(htmlFile: string, gifFile: string, o: GifOptions): number[] {
  const steps = gifSteps(o.maxSteps, o.frames);
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-trace-gif-"));
  try {
    const frames: GifFrame[] = steps.map((step, i) => {
      const png = join(dir, `frame-${i}.png`);
      renderPng(htmlFile, png, { step, width: o.width, height: o.height });
      return { image: decodePng(readFileSync(png), png), delayMs: i === steps.length - 1 ? (o.holdMs ?? 2000) : o.delayMs };
    });
    writeFileSync(gifFile, encodeGif(frames));
    return steps;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
