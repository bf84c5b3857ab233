import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadDataset, type CanonicalRow } from "@rlmesh/shared/datasets/index";
import { createLogger } from "@rlmesh/shared";
import { generateGreedyResponses } from "@rlmesh/rollout/greedy-responses";
import { runEval } from "@rlmesh/executor/run-eval";

/**
 * Difficulty filter for tests that need a learning signal: the first `scan` rows of `file` that
 * `modelDir` solves with greedy decoding (scored in the real sandbox), written to `outDir`.
 * Sampled at temperature 1 such prompts give mixed groups, so a GRPO step has informative samples.
 */
export async function writeSolvableRows(
  modelDir: string,
  file: string,
  scan: number,
  outDir: string,
  redisUrl: string,
): Promise<{ path: string; rows: CanonicalRow[] }> {
  const rows = loadDataset(file, "rlmesh").slice(0, scan);
  const responses = await generateGreedyResponses(modelDir, rows, { logger: createLogger("test", { level: "error" }) });
  const report = await runEval({ dataset: rows, responses, redisUrl, queueName: "solvable-rows", inProcessExecutor: true });
  const solved = new Set(report.rows.filter((r) => r.result.reward === 1).map((r) => r.task_id));
  const kept = rows.filter((r) => solved.has(r.task_id));
  const path = join(outDir, "solvable.jsonl");
  writeFileSync(
    path,
    kept
      .map((r) =>
        JSON.stringify({ task_id: r.task_id, prompt: r.prompt, tests: r.tests, ...(r.reference ? { reference: r.reference } : {}) }),
      )
      .join("\n") + "\n",
  );
  return { path, rows: kept };
}
