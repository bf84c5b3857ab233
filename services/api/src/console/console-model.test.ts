// The console's reading of an event log and its pages, without a server.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Job, JobEvent } from "@rlmesh/shared";
import { jobView, primaryLine } from "./console-model.js";
import { jobPage, jobsPage } from "./pages.js";
import { lineChart } from "./svg-chart.js";

const job = (patch: Partial<Job> = {}): Job =>
  ({
    id: "job-abc-0123",
    spec: { name: "n", steps: 4, traceSamplesPerStep: 0, evalDataset: { path: "e.jsonl" } },
    state: "JOB_STATE_RUNNING",
    step: 2,
    policyVersion: 2,
    rewardMean: 0.5,
    passRate: 0.5,
    evalPassAt1: 0.4,
    createdAtMs: 1,
    updatedAtMs: 2,
    error: "",
    eventCount: 9,
    jobRewardMean: 0.25,
    candidatesScored: 16,
    ...patch,
  }) as unknown as Job;

let offset = 0;
const ev = (e: Partial<JobEvent>): JobEvent => ({ offset: offset++, timeMs: 1000 + offset, jobId: "job-abc-0123", ...e });
const step = (n: number, reward: number, extra: Record<string, unknown> = {}) =>
  ev({ step: { step: n, rewardMean: reward, informativeFraction: 0.5, timings: { seconds: { rollout: n, train: 2 * n } }, train: { loss: 0 }, ...extra } as never });
const evalEv = (n: number, p: number, mode = "greedy", split = "eval") =>
  ev({ eval: { step: n, passAt1: p, ciLow: p - 0.1, ciHigh: p + 0.1, n: 10, responses: 10, split, mode, policyVersion: n } });

test("jobView: lines by split and mode (primary first), a re-run step counted once, guard actions from both signals, phase means", () => {
  const events = [
    evalEv(0, 0.3, "sampled"),
    evalEv(0, 0.4),
    step(1, 0.25, { train: { loss: 0, skipped: true } }),
    step(2, 0.1),
    step(2, 0.5, { train: { loss: 0.1, guardAction: "rollback", guardReason: "reward fell" } }),
    evalEv(2, 0.45),
    ev({ log: { level: "warn", message: "collapse guard (held-out): rollback: pass@1 fell; policy v1" } }),
    ev({ log: { level: "info", message: "learner: job started" } }),
    ev({ state: { fromState: "JOB_STATE_RUNNING", to: "JOB_STATE_FAILED", reason: "boom" } as never }),
  ];
  const v = jobView(job(), events);
  assert.deepEqual(
    v.evals.map((l) => `${l.split}/${l.mode}:${l.points.map((p) => p.passAt1).join(",")}`),
    ["eval/greedy:0.4,0.45", "eval/sampled:0.3"],
  );
  assert.equal(primaryLine(v)?.points.length, 2);
  assert.deepEqual(
    v.steps.map((s) => [s.step, s.rewardMean]),
    [
      [1, 0.25],
      [2, 0.5],
    ],
  );
  assert.equal(v.stepsUpdated, 1);
  assert.deepEqual(
    v.guard.map((g) => [g.step, g.action, g.source, g.reason]),
    [
      [2, "rollback", "step", "reward fell"],
      [2, "rollback", "held-out", "pass@1 fell"],
    ],
  );
  assert.deepEqual(v.phaseNames, ["rollout", "train"]);
  assert.deepEqual(v.phaseMeans, { rollout: 1.5, train: 3 });
  assert.deepEqual(
    v.notices.map((n) => n.message),
    ["collapse guard (held-out): rollback: pass@1 fell; policy v1", "failed: boom"],
  );
});

test("pages escape what users wrote and are never blank when there is nothing yet", () => {
  const evil = job({ spec: { name: "<script>alert(1)</script>", steps: 4, traceSamplesPerStep: 0 } as never, error: "<img src=x onerror=alert(1)>" });
  const html = jobPage(jobView(evil, []), { traces: [] });
  assert.doesNotMatch(html, /<script>alert|<img src=x/);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(html, /no eval yet \(the spec has no eval_dataset\)/);
  assert.match(html, /no step completed yet/);
  assert.match(html, /this job keeps no traces \(spec.trace_samples_per_step is 0\)/);
  assert.match(html, /no rollback: the guard never acted/);
  assert.match(jobsPage([], { limit: 100 }), /no jobs yet: submit one with <code>npx rlmesh submit<\/code>/);
  assert.match(jobsPage([evil], { limit: 100 }), /&lt;img src=x onerror=alert\(1\)&gt;/);
  assert.match(lineChart({ id: "c", title: "t", series: [] }), /no data yet/);
});
