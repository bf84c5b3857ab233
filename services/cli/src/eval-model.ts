import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDataset, type DatasetFormat } from "@rlmesh/shared/datasets/index";
import { evalCommand } from "@rlmesh/executor/eval-command";
import { generateGreedyResponses } from "@rlmesh/rollout/greedy-responses";
import { flagInt, flagString, parseArgs, UsageError } from "./args.js";

/**
 * `rlmesh eval`: the executor's eval (queue → executor → Docker). With --model DIR it first
 * generates one greedy response per row with the model (onnxruntime, in-process) and scores
 * those; the JSON summary then carries `pass_at_1` and generation timing.
 */
export async function evalWithOptionalModel(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ["json"]);
  const modelDir = flagString(a, "model");
  if (!modelDir) return evalCommand(argv);
  if (a.flags.has("solutions")) throw new UsageError("--model and --solutions are exclusive");
  const dataset = flagString(a, "dataset");
  if (!dataset) throw new UsageError("--dataset is required");
  const json = a.flags.has("json");
  const rows = loadDataset(dataset, (flagString(a, "format") ?? "auto") as DatasetFormat);
  const t0 = performance.now();
  const generated = await generateGreedyResponses(modelDir, rows, {
    maxNewTokens: flagInt(a, "max-new-tokens", 64, 1),
    replicas: flagInt(a, "replicas", 1, 1),
  });
  const responses = rows.map((r) => JSON.stringify({ task_id: r.task_id, response: generated.get(r.task_id) ?? "" })).join("\n") + "\n";
  const genSeconds = (performance.now() - t0) / 1000;
  if (!json) console.log(`generated ${rows.length} responses with ${modelDir} in ${genSeconds.toFixed(1)} s`);
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-eval-"));
  const file = join(dir, "responses.jsonl");
  writeFileSync(file, responses);
  const rest = argv.filter(
    (x, i) =>
      x !== "--model" &&
      argv[i - 1] !== "--model" &&
      !x.startsWith("--model=") &&
      x !== "--replicas" &&
      argv[i - 1] !== "--replicas" &&
      x !== "--max-new-tokens" &&
      argv[i - 1] !== "--max-new-tokens",
  );
  const lines: string[] = [];
  try {
    const code = await evalCommand([...rest.filter((x) => x !== "--json"), "--json", "--solutions", file], (l) => lines.push(l));
    const last = lines.at(-1);
    if (!last?.startsWith("{")) {
      for (const l of lines) console.log(l);
      return code || 1;
    }
    const summary = {
      ...(JSON.parse(last) as { total: number; passed: number; by_status: Record<string, number> }),
      generation_seconds: genSeconds,
    };
    const passAt1 = summary.total ? summary.passed / summary.total : 0;
    if (json) console.log(JSON.stringify({ ...summary, pass_at_1: passAt1 }));
    else
      console.log(
        `pass@1 ${(100 * passAt1).toFixed(1)}% (${summary.passed}/${summary.total}); by status ${JSON.stringify(summary.by_status)}`,
      );
    return code;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
