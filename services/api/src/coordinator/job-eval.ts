// Held-out evaluation of a job's current policy.
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type { FinalizeWeightsRequestIn, Logger } from "@rlmesh/shared";
import { CollapseGuardStop } from "./collapse-guard-stop.js";
import { LAST_ITERATE_MODE, PRIMARY_EVAL_SPLIT } from "@rlmesh/shared/eval-splits";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import { stepSeed } from "./batch-sampler.js";
import type { Candidate, LearnerClient } from "./interfaces.js";
import { passRate, type PassRate } from "./pass-at-1.js";
import { checkInfraFailureRate, DEFAULT_MAX_INFRA_FAILURE_RATE, describeDropped, droppedSamples } from "./infra-failures.js";
import type { RunnerDeps } from "./runner-deps.js";
import { asInfillRows, rolloutInfill } from "./infill-task.js";

/**
 * Held-out pass@1 with the policy the rollout workers serve now: greedy (one response per prompt)
 * or, with `samples` k, the mean reward of k sampled responses per prompt at the job's decoding
 * temperature (its interval is over the n·k responses, so it is a little narrow).
 */
export async function evalPassAt1(
  rows: CanonicalRow[],
  jobId: string,
  step: number,
  spec: JobSpec,
  deps: RunnerDeps,
  signal: AbortSignal,
  opts: { split?: string; samples?: number; variant?: string } = {},
): Promise<PassRate & { policyVersion: number }> {
  if (rows.length === 0) return { ...passRate(0, 0), policyVersion: 0 };
  const k = opts.samples ?? 0;
  // The tag keeps each eval's rollout request and reward job ids apart (a variant of the same step too).
  const tag = `${opts.split ?? PRIMARY_EVAL_SPLIT}${k > 0 ? `-s${k}` : ""}${opts.variant ? `-${opts.variant}` : ""}`;
  const decoding =
    k > 0
      ? { ...spec.decoding, seed: stepSeed(Number(spec.seed), step, 0xe7) }
      : { ...spec.decoding, temperature: 0, topP: 1, topK: 0, seed: 1 };
  const call = { signal, requestId: `${jobId}-eval-${tag}-${step}`, policyJobId: jobId };
  // Infill jobs are evaluated on infilling: the whole program (prefix + middle + suffix) is run.
  const samples =
    spec.task === "infill"
      ? await rolloutInfill(asInfillRows(rows), Math.max(1, k), decoding, spec, deps, call, "eval")
      : (
          await deps.rollout.generate(
            rows.map((r, i) => ({ id: String(i), text: r.prompt })),
            Math.max(1, k),
            decoding,
            call,
          )
        ).samples;
  const policyVersion = Math.min(...samples.map((s) => Number(s.policyVersion)));
  const candidates: Candidate[] = samples.map((s, i) => ({
    jobId: `${jobId}-eval-${tag}`,
    step,
    sampleIndex: i,
    row: rows[Number(s.promptId)]!,
    response: s.text,
  }));
  const scores = await deps.rewards.score(candidates, spec.limits, signal);
  // Responses the infrastructure could not score are left out of n (never counted as failures).
  const dropped = droppedSamples(candidates, scores);
  if (dropped.length > 0 && !signal.aborted) {
    for (const d of dropped) deps.metrics?.samplesDropped.inc({ reason: d.status, phase: "eval" });
    const what = `eval ${tag} at step ${step}`;
    await deps.store.appendEvent(jobId, { log: { level: "warn", message: describeDropped(what, dropped, candidates.length) } });
    checkInfraFailureRate(what, dropped, candidates.length, deps.maxInfraFailureRate ?? DEFAULT_MAX_INFRA_FAILURE_RATE);
  }
  const scored = scores.filter((s) => s.reward !== null);
  return { ...passRate(scored.filter((s) => s.reward > 0).length, scored.length), policyVersion };
}

/** The eval event of one line at `step`: `n` prompts (default: the responses scored, as for greedy). */
function evalEvent(step: number, r: PassRate & { policyVersion: number }, split: string, mode: string, n = r.n) {
  return {
    eval: { step, passAt1: r.passAt1, n, split, mode, responses: r.n, ciLow: r.ciLow, ciHigh: r.ciHigh, policyVersion: r.policyVersion },
  };
}

/** What a job's evaluator needs. */
export interface JobEvalContext {
  jobId: string;
  spec: JobSpec;
  deps: RunnerDeps;
  signal: AbortSignal;
  log: Logger;
  /** The primary held-out line's rows (its greedy pass@1 also goes to the collapse guard). */
  evalRows: CanonicalRow[];
  /** More held-out lines, each reported under its split name. */
  extraEvals: { split: string; rows: CanonicalRow[] }[];
}

/** How one eval is run: `final` after FinalizeWeights (see jobEvaluator). */
export interface EvalOptions {
  final?: boolean;
}

/**
 * The job's eval at a step: greedy pass@1 on the primary line (recorded, reported to the
 * learner's collapse guard), then greedy on each extra line and sampled (eval_samples) on every
 * line. Throws CollapseGuardStop, after recording the job as FAILED, when the guard gives up.
 * With `final` (the eval of a job's installed moving average, after FinalizeWeights) the lines'
 * rollout and reward job ids get their own tag (a time-budget stop right after an in-loop eval
 * evaluates the same step again, and reward job ids are idempotent: without it the average would
 * be handed the trained weights' stored rewards), and nothing goes to the guard (a rollback then
 * would put trained weights back in place of the job's final ones).
 */
export function jobEvaluator(ctx: JobEvalContext): (step: number, opts?: EvalOptions) => Promise<PassRate> {
  const { jobId, spec, deps, signal, log, evalRows, extraEvals } = ctx;
  const evaluate = async (step: number, opts: EvalOptions = {}): Promise<PassRate> => {
    const variant = opts.final ? { variant: "final" } : {};
    const r = await evalPassAt1(evalRows, jobId, step, spec, deps, signal, variant);
    await deps.store.appendEvent(jobId, evalEvent(step, r, PRIMARY_EVAL_SPLIT, "greedy"));
    await deps.store.update(jobId, { evalPassAt1: r.passAt1 });
    deps.metrics?.evalPassAt1.set(r.passAt1);
    log.info("eval", { step, passAt1: r.passAt1, n: r.n, ...(opts.final ? { weights: "final (moving average)" } : {}) });
    if (!opts.final) await reportToGuard(step, r);
    // The other lines: greedy on each extra set, then sampled (eval_samples) on every set.
    const record = async (split: string, rows: CanonicalRow[], samples: number) => {
      if (signal.aborted) return;
      const e = await evalPassAt1(rows, jobId, step, spec, deps, signal, { split, samples, ...variant });
      await deps.store.appendEvent(jobId, evalEvent(step, e, split, samples > 0 ? "sampled" : "greedy", rows.length));
    };
    for (const line of [{ split: PRIMARY_EVAL_SPLIT, rows: evalRows }, ...extraEvals]) {
      if (line.split !== PRIMARY_EVAL_SPLIT) await record(line.split, line.rows, 0);
      if (spec.evalSamples > 0) await record(line.split, line.rows, spec.evalSamples);
    }
    return r;
  };
  // The primary greedy line feeds the learner's collapse guard; a rollback is told in the events.
  // A stop fails the job at once: recorded before anything else (a restarted api does not resume
  // it; the job's state event stays its last event), then thrown.
  const reportToGuard = async (step: number, r: PassRate): Promise<void> => {
    if (!deps.learner.reportEval || r.n === 0) return;
    let g: Awaited<ReturnType<NonNullable<LearnerClient["reportEval"]>>>;
    try {
      g = await deps.learner.reportEval({ jobId: jobId, step, passAt1: r.passAt1, n: r.n }, signal);
    } catch (err) {
      if (signal.aborted) return;
      log.warn("ReportEval failed; the collapse guard misses this eval", { step, err: (err as Error).message });
      return;
    }
    if (!g.guardAction) return;
    await deps.store.appendEvent(jobId, {
      log: { level: "warn", message: `collapse guard (held-out): ${g.guardAction}: ${g.guardReason}; policy v${g.policyVersion}` },
    });
    if (g.guardAction !== "stop") return;
    const stop = new CollapseGuardStop(step, `held-out: ${g.guardReason}`);
    await deps.store.transition(jobId, "JOB_STATE_FAILED", stop.message, { error: stop.message });
    throw stop;
  };
  return evaluate;
}

/** True when the learner has installed the job's final weights already (an api restarted after FinalizeWeights). */
export async function jobFinalized(spec: JobSpec, deps: RunnerDeps, jobId: string, signal: AbortSignal): Promise<boolean> {
  const finalize = averaging(spec, deps);
  return finalize ? (await finalize({ jobId, checkOnly: true }, signal)).alreadyFinal : false;
}

/** The learner's FinalizeWeights when the job keeps a moving average of its weights (grpo.ema_decay > 0), else null. */
function averaging(spec: JobSpec, deps: RunnerDeps) {
  const learner = deps.learner;
  return (spec.grpo.emaDecay ?? 0) > 0 && learner.finalizeWeights
    ? (req: FinalizeWeightsRequestIn, signal: AbortSignal) => learner.finalizeWeights!(req, signal)
    : null;
}

/**
 * Ends the training of a job that kept a moving average of its weights (`grpo.ema_decay` > 0):
 * greedy pass@1 of the trained weights on the primary line once more (an eval event of mode
 * `last_iterate`, not reported to the collapse guard), then FinalizeWeights makes the average the
 * job's weights (a new policy version on every rollout worker), so the final eval that follows
 * (jobEvaluator with `final`) scores the average and the two are compared in the same run.
 * Returns true when the job's final weights are its average (installed now or by an earlier call:
 * an api restarted after it only records the version), false without an average.
 */
export async function finalizeJobWeights(ctx: JobEvalContext, step: number): Promise<boolean> {
  const { jobId, spec, deps, signal, log, evalRows } = ctx;
  const finalize = averaging(spec, deps);
  if (!finalize) return false;
  const check = await finalize({ jobId, checkOnly: true }, signal);
  if (check.alreadyFinal) {
    await deps.store.update(jobId, { policyVersion: Number(check.policyVersion) });
    return check.averaged;
  }
  if (!check.averaged) return false;
  if (evalRows.length > 0) {
    const r = await evalPassAt1(evalRows, jobId, step, spec, deps, signal, { variant: "last" });
    await deps.store.appendEvent(jobId, evalEvent(step, r, PRIMARY_EVAL_SPLIT, LAST_ITERATE_MODE));
    log.info("eval of the trained weights before the average", { step, passAt1: r.passAt1, n: r.n });
  }
  const f = await finalize({ jobId, checkOnly: false }, signal);
  await deps.store.update(jobId, { policyVersion: Number(f.policyVersion) });
  await deps.store.appendEvent(jobId, {
    log: {
      level: "info",
      message: `final weights: the moving average of the policy (ema_decay ${f.emaDecay}, ${f.averagedUpdates} updates) as policy v${f.policyVersion}`,
    },
  });
  return true;
}
