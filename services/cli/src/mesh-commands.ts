import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { DEFAULT_LR_DECAY_START, DEFAULT_LR_MIN_RATIO, LR_DECAYS } from "@rlmesh/shared/grpo-defaults";
import type { Job, JobEvent, JobSpecIn } from "@rlmesh/shared";
import { flagBool, flagFloat, flagInt, flagString, parseArgs, UsageError } from "./args.js";
import type { Command } from "./command.js";
import { jobClient, jobs } from "./job-client.js";
import { formatEvent } from "./job-commands.js";
import { LAST_ITERATE_MODE, PRIMARY_EVAL_SPLIT } from "@rlmesh/shared/eval-splits";
import { describeUpPorts, startLocalMesh, type LocalMesh } from "./local-mesh.js";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";

const MESH_FLAGS = "[--rollouts N] [--executors M] [--model DIR] [--state-dir DIR]";

async function meshFromArgs(
  argv: string[],
  fixedPorts: boolean,
  log: (s: string) => void,
): Promise<{ mesh: LocalMesh; rest: ReturnType<typeof parseArgs> }> {
  const a = parseArgs(argv, ["json", "quiet"]);
  const stateDir = resolve(flagString(a, "state-dir") ?? join(REPO_ROOT, ".rlmesh", fixedPorts ? "up" : `run-${Date.now().toString(36)}`));
  mkdirSync(stateDir, { recursive: true });
  const mesh = await startLocalMesh({
    rollouts: flagInt(a, "rollouts", 1, 1),
    executors: flagInt(a, "executors", 1, 1),
    modelDir: resolve(flagString(a, "model") ?? DEFAULT_MODEL_DIR),
    ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
    fixedPorts,
    stateDir,
    log,
  });
  return { mesh, rest: a };
}

export const upCommand: Command = {
  name: "up",
  summary: "run the local mesh as processes (redis-server unless REDIS_URL, api, rollout, executor, learner) until Ctrl-C",
  usage: `rlmesh up ${MESH_FLAGS}`,
  help: `Fixed ports: ${describeUpPorts()} (rollout i and executor i add i to theirs).\nEvery service listens on loopback; move a port with the service's RLMESH_*_PORT variable (README, Configuration).`,
  async run(argv) {
    const { mesh } = await meshFromArgs(argv, true, (s) => console.log(s));
    console.log(
      `\nports: ${describeUpPorts(mesh.processes.filter((p) => p.name.startsWith("rollout")).length, mesh.processes.filter((p) => p.name.startsWith("executor")).length)}`,
    );
    console.log(`\nmesh up: api ${mesh.apiAddr} — submit with \`npx rlmesh submit SPEC.json\`; Ctrl-C stops everything`);
    await new Promise<void>((res) => {
      process.once("SIGINT", res);
      process.once("SIGTERM", res);
    });
    console.log("stopping…");
    await mesh.stop();
    return 0;
  },
};

export interface DemoSummary {
  job_id: string;
  state: string;
  pass_at_1_before: number;
  pass_at_1_after: number;
  /**
   * With a moving average of the weights (grpo.ema_decay > 0): held-out pass@1 of the trained
   * weights themselves at the end, measured right before the average replaced them (pass_at_1_after
   * is the average's). Null without one.
   */
  pass_at_1_last_iterate: number | null;
  /** The job's grpo.ema_decay (0: no average; the final weights are the last update's). */
  ema_decay: number;
  eval_n: number;
  steps: number;
  seconds: number;
  seconds_per_step: number;
  phase_seconds_per_step: Record<string, number>;
  reward_mean_first: number;
  reward_mean_last: number;
  /** Steps after which the policy version did not move: no informative group, nothing learned. */
  steps_without_update: number;
  /** Mean over steps of the fraction of prompt groups whose rewards were not all equal. */
  informative_fraction_mean: number;
  /** Mean rows per step the curriculum sampler passed over (their template saturated; 0 without spec.curriculum). */
  prompts_skipped_per_step: number;
  /** The job's spec.lr_schedule.decay (the demo's: cosine unless --lr-schedule says otherwise). */
  lr_schedule: string;
  /** The LR the learner used in the first and in the last step (TrainStats.lr: the schedule, warmup and collapse-guard scale). */
  lr_first: number;
  lr_last: number;
}

/** Follows a job to its end, printing a live progress line; returns the summary. */
export async function followJob(
  apiAddr: string,
  jobId: string,
  opts: { quiet: boolean; print: (s: string) => void },
): Promise<DemoSummary> {
  const client = jobClient(apiAddr);
  const t0 = Date.now();
  const evals: NonNullable<JobEvent["eval"]>[] = [];
  let lastIterate: number | null = null;
  const steps: NonNullable<JobEvent["step"]>[] = [];
  let total = 0;
  const job0 = await jobs.get(client, jobId);
  total = job0.spec?.steps ?? 0;
  const budgetSeconds = (job0.spec?.maxMinutes ?? 0) * 60;
  const lrSchedule = job0.spec?.lrSchedule?.decay || "constant";
  const tty = process.stderr.isTTY;
  for await (const e of jobs.watchResilient(client, jobId, 0, { onRetry: (m) => opts.print(m) })) {
    // The primary line's greedy pass@1 (extra lines and sampled evals are printed, not summarised).
    if (e.eval && e.eval.split === PRIMARY_EVAL_SPLIT && (e.eval.mode || "greedy") === "greedy") evals.push(e.eval);
    if (e.eval && e.eval.split === PRIMARY_EVAL_SPLIT && e.eval.mode === LAST_ITERATE_MODE) lastIterate = e.eval.passAt1;
    if (e.step) steps.push(e.step);
    if (opts.quiet) continue;
    if (e.step) {
      const elapsed = (Date.now() - t0) / 1000;
      const per = elapsed / steps.length;
      // A time-budgeted job (max_minutes) ends at whichever comes first: its steps or its budget.
      let eta = per * (total - e.step.step);
      if (budgetSeconds > 0) eta = Math.min(eta, budgetSeconds - elapsed);
      const of = total < DEMO_UNBOUNDED_STEPS ? `/${total}` : "";
      const lr = lrSchedule !== "constant" && e.step.train ? `  lr ${e.step.train.lr.toExponential(2)}` : "";
      const line = `step ${e.step.step}${of}  reward ${e.step.rewardMean.toFixed(3)}  pass ${e.step.passRate.toFixed(2)}  ${per.toFixed(1)} s/step  ETA ${Math.max(0, Math.round(eta))} s  v${e.step.policyVersion}${lr}`;
      process.stderr.write(tty ? `\r${line}   ` : `${line}\n`);
    } else {
      if (tty && steps.length) process.stderr.write("\n");
      opts.print(formatEvent(e));
    }
  }
  if (tty && steps.length && !opts.quiet) process.stderr.write("\n");
  const job: Job = await jobs.get(client, jobId);
  client.close();
  const seconds = (Date.now() - t0) / 1000;
  const phase: Record<string, number> = {};
  for (const s of steps) for (const [k, v] of Object.entries(s.timings?.seconds ?? {})) phase[k] = (phase[k] ?? 0) + v / steps.length;
  return {
    job_id: jobId,
    state: job.state,
    pass_at_1_before: evals[0]?.passAt1 ?? NaN,
    pass_at_1_after: evals.at(-1)?.passAt1 ?? NaN,
    pass_at_1_last_iterate: lastIterate,
    ema_decay: job0.spec?.grpo?.emaDecay ?? 0,
    eval_n: evals[0]?.n ?? 0,
    steps: steps.length,
    seconds,
    seconds_per_step: steps.length ? seconds / steps.length : 0,
    phase_seconds_per_step: phase,
    reward_mean_first: steps[0]?.rewardMean ?? NaN,
    reward_mean_last: steps.at(-1)?.rewardMean ?? NaN,
    steps_without_update: steps.filter((st, i) => Number(st.policyVersion) === Number(i === 0 ? 0 : steps[i - 1]!.policyVersion)).length,
    informative_fraction_mean: steps.length ? steps.reduce((a, st) => a + (st.informativeFraction ?? 0), 0) / steps.length : 0,
    prompts_skipped_per_step: steps.length ? steps.reduce((a, st) => a + Number(st.promptsSkipped ?? 0), 0) / steps.length : 0,
    lr_schedule: lrSchedule,
    lr_first: steps[0]?.train?.lr ?? NaN,
    lr_last: steps.at(-1)?.train?.lr ?? NaN,
  };
}

/**
 * The demo's schedule without --lr-schedule: cosine. A constant LR left the policy swinging at the
 * end of the run (an idle run's last eval read 40.0 % where step 400 had read 47.0 %); jobs
 * submitted with a spec keep the api's default (constant).
 */
export const DEMO_DEFAULT_LR_SCHEDULE = "cosine";

/** spec.lr_schedule for `rlmesh demo --lr-schedule NAME` (DEMO_DEFAULT_LR_SCHEDULE without the flag). */
export function demoLrSchedule(name: string = DEMO_DEFAULT_LR_SCHEDULE): JobSpecIn["lrSchedule"] {
  // spec.lr_schedule.decay's values (cosine with the api's defaults: from half the budget to 0.1 × the LR).
  if (!(LR_DECAYS as readonly string[]).includes(name)) {
    throw new UsageError(`--lr-schedule must be one of ${LR_DECAYS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  return name === "cosine" ? { decay: "cosine", decayStart: DEFAULT_LR_DECAY_START, minRatio: DEFAULT_LR_MIN_RATIO } : { decay: "constant" };
}

/**
 * The demo's grpo.ema_decay without --ema-decay: its final weights are the moving average of the
 * policy over roughly its last 50 updates (1 / (1 − 0.98)), which the final eval scores; the trained
 * weights' own pass@1 at the end is printed beside it. At 0.98 the starting weights keep 2 % of the
 * average after 200 updates (a slow machine's run) and 0.1 % after 350. 0 turns it off.
 */
export const DEMO_DEFAULT_EMA_DECAY = 0.98;

/** Step count of a job bounded only by its time budget. */
export const DEMO_UNBOUNDED_STEPS = 1_000_000;
/** The demo's default time budget: with the mesh start and the last evals (the trained weights and their average) the run ends within about 15 minutes on 2 cores. */
export const DEMO_DEFAULT_MINUTES = 14;
/** Held-out evals during the demo (besides before and after): every this many steps. */
export const DEMO_EVAL_INTERVAL = 100;

/** The demo job: RL on the shipped tiny model and the toy task suite. */
export function demoSpec(steps: number, seed: number, modelDir: string): JobSpecIn {
  return {
    name: "demo",
    modelDir,
    dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl"), format: "rlmesh" },
    evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), format: "rlmesh" },
    steps,
    seed,
    // 4 prompts × G 8: with the coupled mask passes stacked, 64 samples × 128 tokens took the
    // learner's jax-js (wasm, 4 GiB address space) past its memory limit after a few batch shapes.
    promptsPerStep: 4,
    groupSize: 8,
  };
}

export const demoCommand: Command = {
  name: "demo",
  summary: "the main job: bring up the local mesh, run RL on the shipped tiny model, print before/after pass@1",
  usage: `rlmesh demo [--minutes M] [--steps N] [--seed S] [--lr-schedule constant|cosine] [--ema-decay D] [--json] [--quiet] ${MESH_FLAGS}`,
  help:
    "--lr-schedule cosine: the LR stays at grpo.lr for the first half of the run (steps or time budget, whichever is further), then falls along a half cosine to 0.1 × grpo.lr at the end (spec.lr_schedule; the demo's default, cosine); --lr-schedule constant keeps grpo.lr throughout (the default of a submitted job). " +
    `--ema-decay D: the job's final weights are the exponential moving average of its policy with decay D (grpo.ema_decay; the demo's default ${DEMO_DEFAULT_EMA_DECAY}); the trained weights' own pass@1 is printed beside the average's; 0: the final weights are the last update's.`,
  async run(argv) {
    const a0 = parseArgs(argv, ["json", "quiet"]);
    const json = flagBool(a0, "json");
    const print = (s: string) => (json ? console.error(s) : console.log(s));
    // A bad --lr-schedule is refused before the mesh starts.
    const lrSchedule = demoLrSchedule(flagString(a0, "lr-schedule"));
    const emaDecay = flagFloat(a0, "ema-decay", DEMO_DEFAULT_EMA_DECAY);
    if (!(emaDecay >= 0 && emaDecay < 1)) throw new UsageError(`--ema-decay must be in [0, 1) (0: no average), got ${emaDecay}`);
    const { mesh, rest } = await meshFromArgs(argv, false, print);
    let interrupted = false;
    const onSig = () => {
      interrupted = true;
      void jobs.list(jobClient(mesh.apiAddr)).then(async (r) => {
        for (const j of r.jobs) await jobs.cancel(jobClient(mesh.apiAddr), j.id, "interrupted");
      });
    };
    process.once("SIGINT", onSig);
    try {
      const modelDir = resolve(flagString(rest, "model") ?? DEFAULT_MODEL_DIR);
      const client = jobClient(mesh.apiAddr);
      const minutes = flagFloat(rest, "minutes", DEMO_DEFAULT_MINUTES);
      if (!(minutes > 0)) throw new UsageError(`--minutes must be > 0, got ${minutes}`);
      const spec = demoSpec(flagInt(rest, "steps", DEMO_UNBOUNDED_STEPS, 1), flagInt(rest, "seed", 1), modelDir);
      const job = await jobs.submit(client, { ...spec, maxMinutes: minutes, evalInterval: DEMO_EVAL_INTERVAL, lrSchedule, grpo: { emaDecay } });
      client.close();
      print(`submitted ${job.id}`);
      const s = await followJob(mesh.apiAddr, job.id, { quiet: flagBool(rest, "quiet"), print });
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      print("");
      print(`job ${s.job_id}: ${s.state.replace("JOB_STATE_", "").toLowerCase()}`);
      print(
        `held-out pass@1 (test-instances, n=${s.eval_n}): ${pct(s.pass_at_1_before)} -> ${pct(s.pass_at_1_after)} (${((s.pass_at_1_after - s.pass_at_1_before) * 100).toFixed(1)} points)` +
          (s.pass_at_1_last_iterate !== null
            ? `, the moving average of the weights (ema_decay ${s.ema_decay}); the trained weights themselves at the end: ${pct(s.pass_at_1_last_iterate)}`
            : ""),
      );
      print(
        `steps ${s.steps} in ${s.seconds.toFixed(0)} s (${s.seconds_per_step.toFixed(1)} s/step: ${Object.entries(s.phase_seconds_per_step)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(", ")})`,
      );
      print(
        `steps that updated the policy: ${s.steps - s.steps_without_update} of ${s.steps} (the others had no group with unequal rewards); ` +
          `informative groups ${(100 * s.informative_fraction_mean).toFixed(0)} % on average` +
          (s.prompts_skipped_per_step > 0 ? `; the curriculum skipped ${s.prompts_skipped_per_step.toFixed(1)} saturated prompts per step` : ""),
      );
      if (s.lr_schedule !== "constant") print(`LR (${s.lr_schedule} decay): first step ${s.lr_first.toExponential(2)}, last step ${s.lr_last.toExponential(2)}`);
      print(
        `metrics: ${mesh
          .metricsTargets()
          .map((t) => `http://${t}/metrics`)
          .join(" ")}`,
      );
      if (json) console.log(JSON.stringify(s));
      return interrupted ? 130 : s.state === "JOB_STATE_SUCCEEDED" ? 0 : 1;
    } finally {
      process.off("SIGINT", onSig);
      await mesh.stop();
    }
  },
};
