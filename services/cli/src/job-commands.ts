import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Job, JobEvent, JobSpecIn } from "@rlmesh/shared";
import { flagBool, flagInt, flagString, parseArgs, UsageError } from "./args.js";
import { checkJobSpecJson } from "@rlmesh/shared/spec-json";
import { camelKeys, jobClient, jobs } from "./job-client.js";
import type { Command } from "./command.js";

const short = (s: string) => s.replace("JOB_STATE_", "").toLowerCase();

/** A JSON spec file, checked strictly against JobSpec; errors name the file and the field. */
export function readSpecFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`${file}: cannot read the spec (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  try {
    checkJobSpecJson(raw);
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
  return camelKeys(raw) as Record<string, unknown>;
}

function specFromArgs(argv: string[]): JobSpecIn {
  const a = parseArgs(argv);
  const file = a.positional[0];
  const spec: Record<string, unknown> = file ? readSpecFile(file) : {};
  const set = (flag: string, key: string, conv: (v: string) => unknown = (v) => v) => {
    const v = flagString(a, flag);
    if (v !== undefined) spec[key] = conv(v);
  };
  const int = (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new UsageError(`expected an integer, got ${v}`);
    return n;
  };
  set("name", "name");
  set("model", "modelDir", (v) => resolve(v));
  set("steps", "steps", int);
  set("group-size", "groupSize", int);
  set("prompts-per-step", "promptsPerStep", int);
  set("seed", "seed", int);
  set("eval-interval", "evalInterval", int);
  set("trace-samples-per-step", "traceSamplesPerStep", int);
  const ds = flagString(a, "dataset");
  if (ds) spec.dataset = { ...(spec.dataset as object), path: resolve(ds) };
  const ev = flagString(a, "eval-dataset");
  if (ev) spec.evalDataset = { ...(spec.evalDataset as object), path: resolve(ev) };
  if (flagBool(a, "overlap")) spec.overlap = true;
  return spec;
}

export function formatJob(j: Job): string {
  return `${j.id}  ${short(j.state).padEnd(9)}  step ${j.step}/${j.spec?.steps ?? "?"}  reward ${j.rewardMean.toFixed(3)} (job mean ${(j.jobRewardMean ?? 0).toFixed(3)})  pass@1 ${j.evalPassAt1.toFixed(3)}  v${j.policyVersion}${j.error ? `  error: ${j.error}` : ""}`;
}

export function formatEvent(e: JobEvent): string {
  const t = new Date(Number(e.timeMs)).toISOString().slice(11, 19);
  if (e.state) return `[${e.offset}] ${t} state ${short(e.state.fromState)} -> ${short(e.state.to)} (${e.state.reason})`;
  if (e.step) {
    const ph = Object.entries(e.step.timings?.seconds ?? {})
      .map(([k, v]) => `${k} ${v.toFixed(2)}s`)
      .join(", ");
    return `[${e.offset}] ${t} step ${e.step.step}: reward ${e.step.rewardMean.toFixed(3)}, pass ${e.step.passRate.toFixed(3)}, v${e.step.policyVersion} (${ph})`;
  }
  if (e.eval) return `[${e.offset}] ${t} eval @step ${e.eval.step}: pass@1 ${e.eval.passAt1.toFixed(3)} [${e.eval.ciLow.toFixed(3)}, ${e.eval.ciHigh.toFixed(3)}] (n=${e.eval.n}, ${e.eval.split}, ${e.eval.mode || "greedy"})`;
  if (e.log) return `[${e.offset}] ${t} ${e.log.level}: ${e.log.message}`;
  return `[${e.offset}] ${t} (event)`;
}

export const submitCommand: Command = {
  name: "submit",
  summary: "submit an RL job from a JSON spec file and/or flags",
  usage:
    "rlmesh submit [SPEC.json] [--model DIR] [--dataset FILE] [--steps N] [--group-size G] [--prompts-per-step B] [--seed S] [--eval-dataset FILE] [--eval-interval N] [--trace-samples-per-step N] [--overlap] [--watch]",
  async run(argv) {
    const watch = argv.includes("--watch");
    const spec = specFromArgs(argv.filter((x) => x !== "--watch"));
    const c = jobClient();
    const job = await jobs.submit(c, spec);
    console.log(job.id);
    if (watch) return watchJob(job.id, 0);
    c.close();
    return 0;
  },
};

export const jobsCommand: Command = {
  name: "jobs",
  summary: "list jobs",
  usage: "rlmesh jobs [--limit N] [--json]",
  async run(argv) {
    const a = parseArgs(argv, ["json"]);
    const c = jobClient();
    const res = await jobs.list(c, flagInt(a, "limit", 50, 1));
    c.close();
    if (flagBool(a, "json")) console.log(JSON.stringify(res.jobs));
    else if (res.jobs.length === 0) console.log("no jobs");
    else for (const j of res.jobs) console.log(formatJob(j));
    return 0;
  },
};

export const cancelCommand: Command = {
  name: "cancel",
  summary: "cancel a job",
  usage: "rlmesh cancel JOB_ID [--reason TEXT]",
  async run(argv) {
    const a = parseArgs(argv);
    const id = a.positional[0];
    if (!id) throw new UsageError("JOB_ID is required");
    const c = jobClient();
    const job = await jobs.cancel(c, id, flagString(a, "reason") ?? "cancelled from the CLI");
    c.close();
    console.log(formatJob(job));
    return 0;
  },
};

async function watchJob(id: string, from: number): Promise<number> {
  const c = jobClient();
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once("SIGINT", onSig);
  const onRetry = (message: string) => console.error(`rlmesh watch: ${message}`);
  for await (const e of jobs.watchResilient(c, id, from, { signal: ac.signal, onRetry })) console.log(formatEvent(e));
  process.off("SIGINT", onSig);
  const job = await jobs.get(c, id); // waits for a reconnecting api (waitForReady)
  c.close();
  console.log(formatJob(job));
  return job.state === "JOB_STATE_SUCCEEDED" ? 0 : job.state === "JOB_STATE_CANCELLED" ? 130 : 1;
}

export const watchCommand: Command = {
  name: "watch",
  summary: "follow a job's events until it ends (resumable with --from OFFSET)",
  usage: "rlmesh watch JOB_ID [--from OFFSET]",
  async run(argv) {
    const a = parseArgs(argv);
    const id = a.positional[0];
    if (!id) throw new UsageError("JOB_ID is required");
    return watchJob(id, flagInt(a, "from", 0));
  },
};
