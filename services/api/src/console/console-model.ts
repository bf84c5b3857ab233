// What the web console shows of a job, computed from the job record and its event log (the same
// data WatchJob streams): pure, so the pages and their tests share one reading of the events.
import type { Job, JobEvent } from "@rlmesh/shared";
import { PRIMARY_EVAL_SPLIT } from "@rlmesh/shared/eval-splits";

export interface EvalPoint {
  step: number;
  passAt1: number;
  ciLow: number;
  ciHigh: number;
  n: number;
  responses: number;
  policyVersion: number;
}

/** One held-out line: a split in a mode ("eval/greedy" is the primary line the guard watches). */
export interface EvalLine {
  split: string;
  mode: string;
  points: EvalPoint[];
}

export interface StepPoint {
  step: number;
  rewardMean: number;
  passRate: number;
  informativeFraction: number;
  candidates: number;
  policyVersion: number;
  /** Seconds per phase (rollout, reward, train, push, ...). */
  phases: Record<string, number>;
  loss: number;
  skipped: boolean;
}

/** A collapse-guard action: from a step's train stats (step reward) or a held-out eval's log line. */
export interface GuardEvent {
  step: number;
  action: string;
  reason: string;
  source: "step" | "held-out";
  timeMs: number;
}

export interface JobView {
  job: Job;
  steps: StepPoint[];
  evals: EvalLine[];
  guard: GuardEvent[];
  /** The phase names in the order they first appear. */
  phaseNames: string[];
  /** Mean seconds per phase over the steps. */
  phaseMeans: Record<string, number>;
  /** Mean of the steps' informative-group fractions. */
  informativeMean: number;
  /** Steps whose batch updated the policy (not skipped for having no informative group). */
  stepsUpdated: number;
  /** The last state change's reason and the warn/error log lines, newest last (bounded). */
  notices: { timeMs: number; level: string; message: string }[];
}

const GUARD_LOG = /^collapse guard \(held-out\): (\w+): (.*?)(?:; policy v\d+)?$/;
const MAX_NOTICES = 50;

export function primaryLine(view: JobView): EvalLine | undefined {
  return view.evals.find((l) => l.split === PRIMARY_EVAL_SPLIT && l.mode === "greedy");
}

/** Reads a job's event log into the console's view. */
export function jobView(job: Job, events: JobEvent[]): JobView {
  const steps: StepPoint[] = [];
  const lines = new Map<string, EvalLine>();
  const guard: GuardEvent[] = [];
  const notices: JobView["notices"] = [];
  // evalStep: the step of the last eval seen, which a guard's held-out log line follows.
  let evalStep = 0;
  for (const e of events) {
    if (e.step) {
      const s = e.step;
      const phases: Record<string, number> = {};
      for (const [k, v] of Object.entries(s.timings?.seconds ?? {})) phases[k] = Number(v);
      const point: StepPoint = {
        step: Number(s.step),
        rewardMean: Number(s.rewardMean ?? 0),
        passRate: Number(s.passRate ?? 0),
        informativeFraction: Number(s.informativeFraction ?? 0),
        candidates: Number(s.candidates ?? 0),
        policyVersion: Number(s.policyVersion ?? 0),
        phases,
        loss: Number(s.train?.loss ?? 0),
        skipped: Boolean(s.train?.skipped),
      };
      // A step re-run after an api restart is recorded once more: keep the last record.
      const at = steps.findIndex((p) => p.step === point.step);
      if (at >= 0) steps[at] = point;
      else steps.push(point);
      const action = s.train?.guardAction ?? "";
      if (action) guard.push({ step: point.step, action, reason: s.train?.guardReason ?? "", source: "step", timeMs: Number(e.timeMs) });
    } else if (e.eval) {
      const v = e.eval;
      const key = `${v.split || PRIMARY_EVAL_SPLIT}/${v.mode || "greedy"}`;
      let line = lines.get(key);
      if (!line) lines.set(key, (line = { split: v.split || PRIMARY_EVAL_SPLIT, mode: v.mode || "greedy", points: [] }));
      evalStep = Number(v.step);
      line.points.push({
        step: evalStep,
        passAt1: Number(v.passAt1 ?? 0),
        ciLow: Number(v.ciLow ?? 0),
        ciHigh: Number(v.ciHigh ?? 0),
        n: Number(v.n ?? 0),
        responses: Number(v.responses ?? 0),
        policyVersion: Number(v.policyVersion ?? 0),
      });
    } else if (e.log) {
      const m = GUARD_LOG.exec(e.log.message);
      if (m) guard.push({ step: evalStep, action: m[1]!, reason: m[2]!, source: "held-out", timeMs: Number(e.timeMs) });
      if (e.log.level === "warn" || e.log.level === "error") notices.push({ timeMs: Number(e.timeMs), level: e.log.level, message: e.log.message });
    } else if (e.state && e.state.to === "JOB_STATE_FAILED") {
      notices.push({ timeMs: Number(e.timeMs), level: "error", message: `failed: ${e.state.reason}` });
    }
  }
  steps.sort((a, b) => a.step - b.step);
  const phaseNames: string[] = [];
  for (const s of steps) for (const k of Object.keys(s.phases)) if (!phaseNames.includes(k)) phaseNames.push(k);
  const phaseMeans: Record<string, number> = {};
  for (const k of phaseNames) phaseMeans[k] = mean(steps.map((s) => s.phases[k] ?? 0));
  // The primary line first, then the others in the order they appeared.
  const evals = [...lines.values()].sort((a, b) => rank(a) - rank(b));
  return {
    job,
    steps,
    evals,
    guard,
    phaseNames,
    phaseMeans,
    informativeMean: mean(steps.map((s) => s.informativeFraction)),
    stepsUpdated: steps.filter((s) => !s.skipped).length,
    notices: notices.slice(-MAX_NOTICES),
  };
}

function rank(l: EvalLine): number {
  return l.split === PRIMARY_EVAL_SPLIT && l.mode === "greedy" ? 0 : 1;
}

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}
