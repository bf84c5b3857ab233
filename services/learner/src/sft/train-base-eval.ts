import { readFile } from "node:fs/promises";

import type { ModelManifest } from "@rlmesh/shared/model/index";

import type { CheckRow } from "./train-base-check.js";
import { passesTests } from "./train-base-check.js";
import { greedyDiffusionDecode, DEFAULT_COMMIT_THRESHOLD } from "./train-base-decode.js";
import { encodePrompt } from "./train-base-data.js";

export interface EvalRow extends CheckRow {
  task_id: string;
  prompt: string;
  meta?: { family?: string };
}

export interface PassAt1Result {
  n: number;
  passed: number;
  passAt1: number;
  byFamily: Record<string, { n: number; passed: number }>;
  seconds: number;
  /** A few (prompt, response) pairs for eyeballing. */
  samples: { task_id: string; response: string; pass: boolean }[];
}

export interface PassAt1Options {
  responseLength: number;
  batchSize: number;
  threshold?: number;
  blockLength?: number;
  limit?: number;
  /** Python checks run concurrently. @defaultValue 2 */
  checkConcurrency?: number;
}

interface Tok {
  encode(text: string): number[];
  decode(ids: readonly number[], o?: { skipSpecial?: boolean }): string;
}

export async function readEvalRows(file: string, limit?: number): Promise<EvalRow[]> {
  const rows = (await readFile(file, "utf8"))
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as EvalRow);
  return limit === undefined ? rows : rows.slice(0, limit);
}

/** Greedy pass@1 of a model (bytes + manifest) on rows, checked with python3 (not the sandbox). */
export async function toyPassAt1(
  modelBytes: Uint8Array,
  manifest: ModelManifest,
  tokenizer: Tok,
  rows: readonly EvalRow[],
  opts: PassAt1Options,
): Promise<PassAt1Result> {
  const t0 = performance.now();
  const ort = await import("onnxruntime-node");
  const session = await ort.InferenceSession.create(modelBytes, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const responses: string[] = [];
  try {
    for (let i = 0; i < rows.length; i += opts.batchSize) {
      const chunk = rows.slice(i, i + opts.batchSize);
      const out = await greedyDiffusionDecode(
        ort,
        session,
        manifest,
        chunk.map((r) => encodePrompt(tokenizer, r.prompt)),
        {
          responseLength: opts.responseLength,
          threshold: opts.threshold ?? DEFAULT_COMMIT_THRESHOLD,
        },
      );
      for (const ids of out) responses.push(ids.length === 0 ? "" : tokenizer.decode(ids, { skipSpecial: true }));
    }
  } finally {
    await session.release();
  }
  const pass = new Array<boolean>(rows.length).fill(false);
  const conc = opts.checkConcurrency ?? 2;
  let next = 0;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < rows.length) {
        const i = next++;
        pass[i] = await passesTests(rows[i]!, responses[i]!);
      }
    }),
  );
  const byFamily: PassAt1Result["byFamily"] = {};
  rows.forEach((r, i) => {
    const fam = r.meta?.family ?? "all";
    const f = (byFamily[fam] ??= { n: 0, passed: 0 });
    f.n++;
    if (pass[i]) f.passed++;
  });
  const passed = pass.filter(Boolean).length;
  return {
    n: rows.length,
    passed,
    passAt1: rows.length ? passed / rows.length : 0,
    byFamily,
    seconds: (performance.now() - t0) / 1000,
    samples: rows.slice(0, 4).map((r, i) => ({ task_id: r.task_id, response: responses[i]!, pass: pass[i]! })),
  };
}
