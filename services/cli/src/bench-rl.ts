import { mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import type { JobEvent, JobSpecIn } from "@rlmesh/shared";
import { flagBool, flagFloat, flagInt, flagString, parseArgs, UsageError } from "./args.js";
import { jobClient, jobs } from "./job-client.js";
import { startLocalMesh } from "./local-mesh.js";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { DEMO_DEFAULT_EMA_DECAY, DEMO_UNBOUNDED_STEPS, demoLrSchedule, demoSpec } from "./mesh-commands.js";
import { evalSplitName, LAST_ITERATE_MODE, PRIMARY_EVAL_SPLIT } from "@rlmesh/shared/eval-splits";

/**
 * `rlmesh bench rl`: an RL job on the local mesh (the demo's path) under a time budget, with the
 * learning curve — held-out pass@1 on the primary line (unseen instances of the training
 * templates) and on the compositional line — and the per-step time split. `--ablate` runs named
 * variants of the recipe one after another, each on a fresh mesh with the same seed.
 */

export const COMPOSITIONAL_FILE = join(REPO_ROOT, "datasets", "toy", "test-compositional.jsonl");
export const COMPOSITIONAL_SPLIT = evalSplitName(COMPOSITIONAL_FILE);

type Spec = JobSpecIn & { grpo: NonNullable<JobSpecIn["grpo"]>; decoding: NonNullable<JobSpecIn["decoding"]> };

/** Named changes to the shipped recipe; `recipe` is the recipe itself. */
export const RL_VARIANTS: Record<string, { summary: string; apply: (s: Spec) => void }> = {
  recipe: { summary: "the learner's shipped defaults", apply: () => undefined },
  "no-warmup": { summary: "no LR warmup", apply: (s) => void (s.grpo.warmupSteps = 0) },
  "weight-in-ratio": { summary: "1/t weights inside the importance ratio", apply: (s) => void (s.grpo.weightInRatio = true) },
  "no-substitution": { summary: "no intra-batch informative substitution", apply: (s) => void (s.grpo.disableSubstitution = true) },
  "seq-mean": { summary: "sequence-level loss aggregation", apply: (s) => void (s.grpo.lossAgg = "seq-mean-token-mean") },
  "lr-3e-4": { summary: "LR 3e-4", apply: (s) => void (s.grpo.lr = 3e-4) },
  "lr-3e-5": { summary: "LR 3e-5", apply: (s) => void (s.grpo.lr = 3e-5) },
  "lr-cosine": {
    summary: "LR decay over the run: grpo.lr until half-way (steps or budget), then a half cosine to 0.1 × grpo.lr",
    apply: (s) => void (s.lrSchedule = demoLrSchedule("cosine")),
  },
  ema: {
    summary: "final weights: the moving average of the policy, ema_decay 0.98 (the final eval scores it)",
    apply: (s) => void (s.grpo.emaDecay = DEMO_DEFAULT_EMA_DECAY),
  },
  "temp-0.7": { summary: "rollout temperature 0.7", apply: (s) => void (s.decoding.temperature = 0.7) },
  g16: {
    summary: "G 16 × 4 prompts (twice the recipe's samples per step)",
    apply: (s) => {
      s.groupSize = 16;
      s.promptsPerStep = 4;
    },
  },
  curriculum: {
    summary: "curriculum sampling: skip prompts whose template was all-pass or all-fail on its last 2 visits (10 % exploration)",
    apply: (s) => void (s.curriculum = { window: 2, explore: 0.1 }),
  },
  "curriculum-1": {
    summary: "curriculum sampling: skip prompts whose template was all-pass or all-fail on its last visit (10 % exploration)",
    apply: (s) => void (s.curriculum = { window: 1, explore: 0.1 }),
  },
  "oversample-2": {
    summary: "dynamic sampling: roll out 2× the prompts, train on the informative groups first",
    apply: (s) => void (s.oversample = 2),
  },
  "oversample-3": {
    summary: "dynamic sampling: roll out 3× the prompts, train on the informative groups",
    apply: (s) => void (s.oversample = 3),
  },
  p8: {
    summary: "8 prompts × G 8 per step (the learner runs it in row chunks)",
    apply: (s) => void (s.promptsPerStep = 8),
  },
  overlap: { summary: "rollout of step k+1 overlapped with training of step k", apply: (s) => void (s.overlap = true) },
  "mask-epochs-2": { summary: "2 coupled mask epochs per batch", apply: (s) => void (s.grpo.maskEpochs = 2) },
  cart: {
    summary: "CART token weights (p 0.1) instead of 1/t",
    apply: (s) => {
      s.grpo.lossWeight = "cart";
      s.grpo.cartP = 0.1;
    },
  },
  "inv-t": {
    summary: "1/t token weights (explicit, whatever the learner's default)",
    apply: (s) => {
      s.grpo.lossWeight = "inv_t";
      delete s.grpo.cartP;
    },
  },
};

export interface CurvePoint {
  minutes: number;
  step: number;
  /** Mean reward of the steps since the previous point (NaN before the first step). */
  reward_mean: number;
  informative_fraction: number;
  pass_at_1: number;
  ci_low: number;
  ci_high: number;
  n: number;
  compositional: number | null;
  sampled: number | null;
}

export interface BenchRlResult {
  variant: string;
  seed: number;
  state: string;
  pass_at_1_before: number;
  pass_at_1_after: number;
  /** With grpo.ema_decay: the trained weights' own greedy pass@1 at the end (pass_at_1_after is their moving average's); null without one. */
  pass_at_1_last_iterate: number | null;
  ci_before: [number, number];
  ci_after: [number, number];
  eval_n: number;
  compositional_before: number | null;
  compositional_after: number | null;
  sampled_before: number | null;
  sampled_after: number | null;
  minutes: number;
  steps: number;
  seconds_per_step: number;
  phase_seconds_per_step: Record<string, number>;
  rollbacks: number;
  /** Steps after which the policy version did not move (no informative group: nothing learned). */
  steps_without_update: number;
  /** Mean over steps of the fraction of rolled-out groups whose rewards were not all equal. */
  informative_fraction_mean: number;
  /** Mean rows per step the curriculum sampler passed over (0 without spec.curriculum). */
  prompts_skipped_per_step: number;
  /** The first eval step whose primary pass@1 is ≥ 10 points above the step-0 eval (null: never). */
  steps_to_plus_10: number | null;
  /** The LR the learner used in the first and the last step (TrainStats.lr: spec.lr_schedule, warmup, guard scale; NaN without steps). */
  lr_first: number;
  lr_last: number;
  curve: CurvePoint[];
}

/** Builds the learning curve and summary from a job's event log (pure; `t0Ms` = job start). */
export function summarizeRlEvents(events: JobEvent[], meta: { variant: string; seed: number; state: string }): BenchRlResult {
  const t0 = Number(events[0]?.timeMs ?? 0);
  const curve: CurvePoint[] = [];
  const steps: NonNullable<JobEvent["step"]>[] = [];
  let sinceLast: NonNullable<JobEvent["step"]>[] = [];
  let rollbacks = 0;
  let lastIterate: number | null = null;
  const mean = (f: (x: NonNullable<JobEvent["step"]>) => number) =>
    sinceLast.length ? sinceLast.reduce((a, x) => a + f(x), 0) / sinceLast.length : NaN;
  for (const e of events) {
    if (e.step) {
      steps.push(e.step);
      sinceLast.push(e.step);
      if (e.step.train?.guardAction === "rollback") rollbacks++;
    }
    if (e.log && /collapse guard \(held-out\): rollback/.test(e.log.message)) rollbacks++;
    if (!e.eval) continue;
    const ev = e.eval;
    const mode = ev.mode || "greedy";
    if (ev.split === PRIMARY_EVAL_SPLIT && mode === LAST_ITERATE_MODE) lastIterate = ev.passAt1;
    // The coordinator emits an eval round's primary greedy line first: it opens the curve point,
    // the round's other lines fill it in.
    if (ev.split === PRIMARY_EVAL_SPLIT && mode === "greedy") {
      curve.push({
        minutes: round((Number(e.timeMs) - t0) / 60_000, 2),
        step: Number(ev.step),
        reward_mean: round(mean((x) => x.rewardMean), 4),
        informative_fraction: round(mean((x) => x.informativeFraction), 3),
        pass_at_1: ev.passAt1,
        ci_low: round(ev.ciLow, 4),
        ci_high: round(ev.ciHigh, 4),
        n: ev.n,
        compositional: null,
        sampled: null,
      });
      sinceLast = [];
      continue;
    }
    const point = curve.at(-1);
    if (!point || point.step !== Number(ev.step)) continue;
    if (ev.split === PRIMARY_EVAL_SPLIT && mode === "sampled") point.sampled = ev.passAt1;
    else if (ev.split === COMPOSITIONAL_SPLIT && mode === "greedy") point.compositional = ev.passAt1;
  }
  const first = curve[0];
  const last = curve.at(-1);
  const lastTime = Number(events.at(-1)?.timeMs ?? t0);
  const phase: Record<string, number> = {};
  for (const s of steps) for (const [k, v] of Object.entries(s.timings?.seconds ?? {})) phase[k] = round((phase[k] ?? 0) + v / steps.length, 3);
  const stepSeconds = steps.reduce((a, s) => a + Object.values(s.timings?.seconds ?? {}).reduce((x, y) => x + y, 0), 0);
  return {
    variant: meta.variant,
    seed: meta.seed,
    state: meta.state,
    pass_at_1_before: first?.pass_at_1 ?? NaN,
    pass_at_1_after: last?.pass_at_1 ?? NaN,
    pass_at_1_last_iterate: lastIterate,
    ci_before: [first?.ci_low ?? NaN, first?.ci_high ?? NaN],
    ci_after: [last?.ci_low ?? NaN, last?.ci_high ?? NaN],
    eval_n: first?.n ?? 0,
    compositional_before: first?.compositional ?? null,
    compositional_after: last?.compositional ?? null,
    sampled_before: first?.sampled ?? null,
    sampled_after: last?.sampled ?? null,
    minutes: round((lastTime - t0) / 60_000, 2),
    steps: steps.length,
    seconds_per_step: steps.length ? round(stepSeconds / steps.length, 3) : 0,
    phase_seconds_per_step: phase,
    rollbacks,
    steps_without_update: steps.filter((st, i) => Number(st.policyVersion) === (i === 0 ? 0 : Number(steps[i - 1]!.policyVersion))).length,
    informative_fraction_mean: steps.length ? round(steps.reduce((a, st) => a + (st.informativeFraction ?? 0), 0) / steps.length, 3) : 0,
    prompts_skipped_per_step: steps.length ? round(steps.reduce((a, st) => a + Number(st.promptsSkipped ?? 0), 0) / steps.length, 2) : 0,
    steps_to_plus_10: first ? (curve.find((p) => p.pass_at_1 - first.pass_at_1 >= 0.1 - 1e-9)?.step ?? null) : null,
    lr_first: steps[0]?.train?.lr ?? NaN,
    lr_last: steps.at(-1)?.train?.lr ?? NaN,
    curve,
  };
}

function round(x: number, d: number): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** The bench's job: the demo spec with a time budget, periodic evals on both lines. */
export function benchRlSpec(o: {
  seed: number;
  minutes: number;
  /** A fixed number of steps (the same work for every variant, whatever the machine's load); unset = until the budget. */
  steps?: number;
  evalInterval: number;
  evalSamples: number;
  evalLimit: number;
  modelDir: string;
  variant: string;
}): JobSpecIn {
  // "a+b" applies variant a, then b.
  const parts = o.variant.split("+").map((name) => {
    const v = RL_VARIANTS[name];
    if (!v) throw new UsageError(`unknown variant "${name}"; one of ${Object.keys(RL_VARIANTS).join(", ")} (combine with +)`);
    return v;
  });
  const base = demoSpec(o.steps ?? DEMO_UNBOUNDED_STEPS, o.seed, o.modelDir);
  const spec: Spec = {
    ...base,
    name: `bench-rl-${o.variant}`,
    evalDataset: { ...base.evalDataset, limit: o.evalLimit },
    extraEvalDatasets: [{ path: COMPOSITIONAL_FILE, format: "rlmesh", limit: o.evalLimit }],
    evalInterval: o.evalInterval,
    evalSamples: o.evalSamples,
    maxMinutes: o.minutes,
    grpo: { ...(base.grpo ?? {}) },
    decoding: { ...(base.decoding ?? {}) },
  };
  for (const v of parts) v.apply(spec);
  return spec;
}

const pct = (x: number | null) => (x === null || Number.isNaN(x) ? "  –  " : `${(100 * x).toFixed(1)}%`);

export function formatCurve(r: BenchRlResult): string {
  const rows = [
    "minutes  step  reward  informative  pass@1 [95% CI]         compositional  sampled",
    ...r.curve.map(
      (p) =>
        `${p.minutes.toFixed(1).padStart(7)}  ${String(p.step).padStart(4)}  ${Number.isNaN(p.reward_mean) ? "   – " : p.reward_mean.toFixed(3)}   ${Number.isNaN(p.informative_fraction) ? "  –  " : p.informative_fraction.toFixed(2).padStart(5)}        ` +
        `${pct(p.pass_at_1).padStart(6)} [${pct(p.ci_low)}, ${pct(p.ci_high)}]`.padEnd(25) +
        `${pct(p.compositional).padStart(13)}  ${pct(p.sampled).padStart(7)}`,
    ),
  ];
  return rows.join("\n");
}

export function formatAblation(results: BenchRlResult[]): string {
  return [
    "variant            before   after    delta    compositional      steps  s/step  rollbacks  informative  no-update  to +10",
    ...results.map(
      (r) =>
        `${r.variant.padEnd(17)}  ${pct(r.pass_at_1_before).padStart(6)}  ${pct(r.pass_at_1_after).padStart(6)}  ` +
        `${((r.pass_at_1_after - r.pass_at_1_before) * 100).toFixed(1).padStart(5)} pt  ${pct(r.compositional_before).padStart(6)} → ${pct(r.compositional_after).padStart(6)}  ` +
        `${String(r.steps).padStart(5)}  ${r.seconds_per_step.toFixed(1).padStart(6)}  ${String(r.rollbacks).padStart(9)}  ` +
        `${r.informative_fraction_mean.toFixed(2).padStart(11)}  ${String(r.steps_without_update).padStart(9)}  ${String(r.steps_to_plus_10 ?? "–").padStart(6)}`,
    ),
  ].join("\n");
}

export const BENCH_RL_USAGE =
  "rlmesh bench rl [--minutes N] [--steps N] [--seed S] [--eval-every STEPS] [--eval-limit N] [--eval-samples K] [--ablate v1,v2+v3,…] [--model DIR] [--rollouts N] [--executors M] [--json]";

export async function benchRlCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ["json", "quiet"]);
  const json = flagBool(a, "json");
  const print = (s: string) => (json ? console.error(s) : console.log(s));
  // --steps fixes the work per variant; the time budget then only caps a runaway (default 600 min).
  const steps = a.flags.has("steps") ? flagInt(a, "steps", 1, 1) : undefined;
  const minutes = flagFloat(a, "minutes", steps === undefined ? 15 : 600);
  if (!(minutes > 0)) throw new UsageError(`--minutes must be > 0, got ${minutes}`);
  const seed = flagInt(a, "seed", 1);
  const ablate = flagString(a, "ablate");
  const variants = ablate ? ablate.split(",").map((s) => s.trim()).filter(Boolean) : ["recipe"];
  for (const v of variants) if (!RL_VARIANTS[v]) throw new UsageError(`unknown variant "${v}"; one of ${Object.keys(RL_VARIANTS).join(", ")}`);
  const modelDir = resolve(flagString(a, "model") ?? DEFAULT_MODEL_DIR);
  const results: BenchRlResult[] = [];
  for (const variant of variants) {
    const spec = benchRlSpec({
      seed,
      minutes,
      ...(steps !== undefined ? { steps } : {}),
      evalInterval: flagInt(a, "eval-every", 25, 0),
      evalSamples: flagInt(a, "eval-samples", 0, 0),
      evalLimit: flagInt(a, "eval-limit", 0, 0),
      modelDir,
      variant,
    });
    const stateDir = join(REPO_ROOT, ".rlmesh", `bench-rl-${Date.now().toString(36)}`);
    mkdirSync(stateDir, { recursive: true });
    print(`bench rl: variant ${variant} (${RL_VARIANTS[variant]!.summary}), seed ${seed}, ${steps !== undefined ? `${steps} steps, ` : ""}${minutes} min budget`);
    const mesh = await startLocalMesh({
      rollouts: flagInt(a, "rollouts", 1, 1),
      executors: flagInt(a, "executors", 1, 1),
      modelDir,
      ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
      fixedPorts: false,
      stateDir,
      log: flagBool(a, "quiet") ? () => undefined : print,
    });
    // A job that did not succeed keeps its mesh's logs for a post-mortem.
    let keepLogs = false;
    try {
      const client = jobClient(mesh.apiAddr);
      const job = await jobs.submit(client, spec);
      const events: JobEvent[] = [];
      for await (const e of jobs.watchResilient(client, job.id, 0)) {
        events.push(e);
        if (e.step) {
          const lr = e.step.train ? `  lr ${e.step.train.lr.toExponential(2)}` : "";
          process.stderr.write(`  step ${e.step.step}  reward ${e.step.rewardMean.toFixed(3)}  informative ${e.step.informativeFraction.toFixed(2)}${lr}\n`);
        }
        if (e.eval) print(`  eval @ step ${e.eval.step} ${e.eval.split}/${e.eval.mode || "greedy"}: ${pct(e.eval.passAt1)} (n=${e.eval.n})`);
        if (e.log) print(`  ${e.log.level}: ${e.log.message}`);
      }
      const final = await jobs.get(client, job.id);
      client.close();
      const r = summarizeRlEvents(events, { variant, seed, state: final.state });
      results.push(r);
      if (r.state !== "JOB_STATE_SUCCEEDED") {
        keepLogs = true;
        const ended = events.filter((e) => e.state).at(-1)?.state;
        print(`  job ended ${r.state}${ended?.reason ? `: ${ended.reason}` : ""}; logs kept in ${stateDir}/logs`);
      }
      print(`\n${formatCurve(r)}`);
      print(
        `time per step ${r.seconds_per_step.toFixed(2)} s: ${Object.entries(r.phase_seconds_per_step)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(", ")}; LR first step ${r.lr_first.toExponential(2)}, last ${r.lr_last.toExponential(2)}\n`,
      );
    } finally {
      await mesh.stop();
      if (!keepLogs) rmSync(stateDir, { recursive: true, force: true });
    }
  }
  if (results.length > 1) print(formatAblation(results));
  if (json) {
    const head = results[0]!;
    console.log(JSON.stringify(results.length > 1 ? { ...head, ablation: results.map(({ curve: _c, ...rest }) => rest) } : head));
  }
  return results.every((r) => r.state === "JOB_STATE_SUCCEEDED") ? 0 : 1;
}
