/**
 * `rlmesh trace`: a decode-trace replay page (renderTraceHtml) from a job's stored traces, a
 * one-off local decode, or a traces JSON file; optionally a PNG still (headless Chromium), and
 * per sample the position/commit-step correlation that tells sketch-first from left-to-right.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { orderLabel, renderTraceHtml, traceSteps, type TraceSample } from "@rlmesh/shared/trace/index";
import type { DecodeParamsInput } from "@rlmesh/rollout/decoding/decode-params";
import { loadDataset, type CanonicalRow } from "@rlmesh/shared/datasets/index";
import { flagFloat, flagInt, flagString, parseArgs, UsageError } from "../args.js";
import type { Command } from "../command.js";
import { apiAddress } from "../job-client.js";
import { estimatePageHeight, PNG_WIDTH, renderPng } from "./chromium-still.js";
import { tracesFromFile, tracesOfJob, tracesOfOneOff } from "./trace-sources.js";
import { renderGif } from "./trace-gif.js";

/** Frames of --gif (one Chromium still each) and the time each shows. */
export const GIF_FRAMES = 24;
export const GIF_DELAY_MS = 250;

/** Prompts a one-off --dataset decode takes by default. */
export const ONE_OFF_DATASET_LIMIT = 8;

/** Default response length of a one-off decode: the shipped model's trained length. */
export const ONE_OFF_MAX_NEW_TOKENS = 64;

/** One line per sample: tokens, steps, NFE, reward, order correlation and its reading. */
export function traceSummaryLines(traces: readonly TraceSample[]): string[] {
  const w = Math.max(6, ...traces.map((s) => label(s).length));
  return [
    `${"sample".padEnd(w)}  tokens  steps   nfe  reward  order_r  reading`,
    ...traces.map((s) => {
      const r = s.orderCorrelation ?? 0;
      const steps = traceSteps(s);
      return [
        label(s).padEnd(w),
        String(s.commitSteps.length).padStart(6),
        String(steps).padStart(5),
        (s.nfe !== undefined ? String(s.nfe) : "-").padStart(5),
        (s.reward !== undefined ? s.reward.toFixed(2) : "-").padStart(6),
        r.toFixed(3).padStart(7),
        steps > 1 && s.commitSteps.length > 1 ? orderLabel(r) : "one step",
      ].join("  ");
    }),
  ];
}

function label(s: TraceSample): string {
  return s.step !== undefined ? `${s.promptId} @${s.step}` : s.promptId;
}

/**
 * One-off decoding: by default as in the Dream-Coder post's figures, one token per step over the
 * whole response (steps = max_new_tokens, one block), greedy; --threshold switches to the
 * Fast-dLLM threshold rule, --steps / --block-length change the schedule.
 */
function decodeFlags(a: ReturnType<typeof parseArgs>): DecodeParamsInput {
  const maxNew = flagInt(a, "max-new-tokens", ONE_OFF_MAX_NEW_TOKENS, 1);
  const p: DecodeParamsInput = { max_new_tokens: maxNew, block_length: flagInt(a, "block-length", maxNew, 1) };
  const alg = flagString(a, "alg");
  if (alg) p.alg = alg as DecodeParamsInput["alg"];
  if (a.flags.has("threshold")) {
    if (a.flags.has("steps")) throw new UsageError("--threshold and --steps are exclusive (the threshold rule or the step schedule)");
    p.threshold = flagFloat(a, "threshold", 0);
    p.commit = "threshold";
  } else {
    p.steps = flagInt(a, "steps", maxNew, 1);
    p.commit = "schedule";
  }
  if (a.flags.has("temperature")) p.temperature = flagFloat(a, "temperature", 0);
  if (a.flags.has("top-p")) p.top_p = flagFloat(a, "top-p", 1);
  if (a.flags.has("alg-temp")) p.alg_temp = flagFloat(a, "alg-temp", 0);
  const cache = flagString(a, "cache");
  if (cache) p.cache = cache as DecodeParamsInput["cache"];
  p.seed = flagInt(a, "seed", 1, 0);
  return p;
}

export const traceCommand: Command = {
  name: "trace",
  summary: "replay how a diffusion decode wrote its tokens: an HTML page (and PNG) from a job's traces or a one-off decode",
  usage:
    "rlmesh trace (--job ID [--api ADDR] [--from-step N] [--limit N] | --model DIR (--prompt-file F | --dataset FILE [--limit N]) [--samples N] [decoding flags] | --input TRACES.json) " +
    "[--out trace.html] [--json TRACES.json] [--png FILE [--png-step K]] [--gif FILE [--gif-frames N] [--gif-delay-ms MS]] [--png-width W]",
  help: [
    "Sources:",
    "  --job ID            the traced samples a job kept (spec trace_samples_per_step > 0), from the api (--api, default RLMESH_API_ADDR or 127.0.0.1:50051)",
    "  --model DIR --prompt-file F   decode the prompt (the file's text) locally with onnxruntime, traced; --samples N (default 1)",
    `  --model DIR --dataset FILE    the same for the first --limit N prompts of a dataset (default ${ONE_OFF_DATASET_LIMIT}); prints the mean order_r too`,
    "      decoding (default: one token per step over one block, greedy, as in the Dream-Coder figures):",
    "      --max-new-tokens N (64) --steps N (max-new-tokens) --block-length N (max-new-tokens) --alg ALG (maskgit_plus)",
    "      --threshold T (the Fast-dLLM threshold rule instead of the schedule) --alg-temp T --temperature T (0) --top-p P",
    "      --cache none|prefix|dual --seed S (1)",
    "  --input F           a traces JSON file (a GetJobTraces response or what --json wrote)",
    "Outputs:",
    "  --out F             the self-contained HTML page (default trace.html): tokens appear in commit order, coloured by step; scrubber and play",
    "  --json F            the traces as JSON (renderable again with --input)",
    "  --png F             a still of the page via headless Chromium at --png-step K (default: the finished decode)",
    `  --gif F             an animated GIF of the replay: --gif-frames N Chromium stills (default ${GIF_FRAMES}) from step 0 to the end, --gif-delay-ms MS each (${GIF_DELAY_MS})`,
    "Prints per sample the Pearson correlation of position and commit step (order_r: 1 = left to right;",
    ">= 0.9 left-to-right, >= 0.5 interleaved, below sketch-first).",
  ].join("\n"),
  async run(argv) {
    const a = parseArgs(argv);
    if (a.positional.length > 0) throw new UsageError(`unexpected argument ${a.positional[0]}`);
    const jobId = flagString(a, "job");
    const modelDir = flagString(a, "model");
    const input = flagString(a, "input");
    const sources = [jobId, modelDir, input].filter((x) => x !== undefined).length;
    if (sources !== 1) throw new UsageError("give exactly one source: --job ID, --model DIR --prompt-file F, or --input TRACES.json");

    let traces: TraceSample[];
    let subtitle: string;
    if (jobId) {
      const api = flagString(a, "api") ?? apiAddress();
      traces = await tracesOfJob(api, jobId, flagInt(a, "from-step", 0, 0), flagInt(a, "limit", 0, 0));
      subtitle = `job ${jobId} (${api}): ${traces.length} traced samples`;
    } else if (modelDir) {
      const promptFile = flagString(a, "prompt-file");
      const dataset = flagString(a, "dataset");
      if (!promptFile === !dataset) throw new UsageError("--model needs --prompt-file F (the prompt's text) or --dataset FILE [--limit N] (its first N prompts)");
      let prompts: Array<{ id: string; text: string }>;
      if (promptFile) {
        let prompt: string;
        try {
          prompt = readFileSync(promptFile, "utf8").replace(/\s+$/, "");
        } catch (err) {
          throw new UsageError(`--prompt-file ${promptFile}: ${(err as Error).message}`);
        }
        if (prompt.trim() === "") throw new UsageError(`--prompt-file ${promptFile} is empty`);
        prompts = [{ id: "prompt", text: prompt }];
      } else {
        let rows: CanonicalRow[];
        try {
          rows = loadDataset(dataset!, "auto");
        } catch (err) {
          throw new UsageError(`--dataset ${dataset}: ${(err as Error).message}`);
        }
        prompts = rows.slice(0, flagInt(a, "limit", ONE_OFF_DATASET_LIMIT, 1)).map((r) => ({ id: r.task_id, text: r.prompt }));
        if (prompts.length === 0) throw new UsageError(`--dataset ${dataset} has no rows`);
      }
      const params = decodeFlags(a);
      traces = await tracesOfOneOff({ modelDir, prompts, samples: flagInt(a, "samples", 1, 1), params });
      subtitle = `${modelDir}: ${Object.entries(params)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(", ")}`;
    } else {
      traces = tracesFromFile(input!);
      subtitle = `${input}`;
    }

    const out = flagString(a, "out") ?? "trace.html";
    writeFileSync(out, renderTraceHtml(traces, { title: "rlmesh decode trace", subtitle }));
    const json = flagString(a, "json");
    if (json) writeFileSync(json, JSON.stringify({ samples: traces }, null, 1) + "\n");
    for (const line of traceSummaryLines(traces)) console.log(line);
    if (traces.length > 1) {
      const rs = traces.map((t) => t.orderCorrelation ?? 0).sort((x, y) => x - y);
      const mean = rs.reduce((x, y) => x + y, 0) / rs.length;
      console.log(`order_r over ${rs.length} samples: mean ${mean.toFixed(3)}, median ${rs[rs.length >> 1]!.toFixed(3)}, min ${rs[0]!.toFixed(3)}, max ${rs.at(-1)!.toFixed(3)}`);
    }
    const steps = Math.max(...traces.map((s) => traceSteps(s)));
    console.log(`wrote ${out} (${traces.length} samples, ${steps} steps)${json ? ` and ${json}` : ""}`);
    const png = flagString(a, "png");
    if (png) {
      const width = flagInt(a, "png-width", PNG_WIDTH, 320);
      const step = a.flags.has("png-step") ? flagInt(a, "png-step", steps, 0) : undefined;
      renderPng(out, png, { ...(step !== undefined ? { step } : {}), width, height: estimatePageHeight(traces, width) });
      console.log(`wrote ${png}${step !== undefined ? ` (step ${step})` : ""}`);
    }
    const gif = flagString(a, "gif");
    if (gif) {
      const width = flagInt(a, "png-width", PNG_WIDTH, 320);
      const shown = renderGif(out, gif, {
        maxSteps: steps,
        frames: flagInt(a, "gif-frames", GIF_FRAMES, 2),
        delayMs: flagInt(a, "gif-delay-ms", GIF_DELAY_MS, 10),
        width,
        height: estimatePageHeight(traces, width),
      });
      console.log(`wrote ${gif} (${shown.length} frames: steps ${shown.join(", ")})`);
    }
    return 0;
  },
};
