// Curriculum sampling in a running job: a real Redis (job state, events, the stored visits), the
// rollout pool, reward queue and learner faked at their seams, rewards decided by each row's template.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger, type TrainStepResponse } from "@rlmesh/shared";
import { normalizeSpec } from "../job-spec.js";
import { JobStore } from "../job-store.js";
import { Coordinator } from "./coordinator.js";
import { fakeRollout, runJobToEnd, runnerTestbed } from "./testing/runner-testbed.js";
import type { LearnerClient, RewardScorer } from "./interfaces.js";
import { loadJobRows } from "./job-datasets.js";
import { curriculumVisitsKey, loadCurriculumSampler, stepVisits } from "./job-step.js";
import type { RolloutPool } from "./rollout-pool.js";

const bed = runnerTestbed("curriculum-job-test");
// 30 rows of three templates: "easy" (every sample passes), "hard" (none does), "mid" (half do).
const TEMPLATES = ["easy", "hard", "mid"] as const;
const dataset = join(bed.dir, "templated.jsonl");
writeFileSync(
  dataset,
  Array.from({ length: 30 }, (_, i) =>
    JSON.stringify({ task_id: `r${i}`, prompt: `prompt ${i}`, tests: { kind: "assert", tests: ["assert True"] }, meta: { template: TEMPLATES[i % 3] } }),
  ).join("\n") + "\n",
);
const templateOf = (prompt: string) => TEMPLATES[Number(prompt.split(" ")[1]) % 3]!;

const rewards: RewardScorer = {
  score: async (cands) =>
    cands.map((c) => ({ reward: c.row.template === "easy" ? 1 : c.row.template === "hard" ? 0 : c.sampleIndex % 2, status: "ok" })),
  purge: async () => 0,
};
const learner: LearnerClient = {
  startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
  trainStep: async (req) => ({ policyVersion: Number(req.step), stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 }) as unknown as TrainStepResponse,
};

async function run(curriculum: { window: number; explore: number } | undefined) {
  const base = fakeRollout();
  const batches: string[][] = [];
  const rollout = { ...base, generate: async (...args: Parameters<RolloutPool["generate"]>) => (batches.push(args[0].map((p) => p.text)), base.generate(...args)),
  } as unknown as RolloutPool;
  const store = new JobStore(bed.conn);
  const deps = { store, redis: bed.conn, rollout, rewards, learner, logger: createLogger("api-test", { level: "error" }) };
  const spec = normalizeSpec({ modelDir: bed.dir, dataset: { path: dataset }, groupSize: 4, promptsPerStep: 2, steps: 12, seed: 5, ...(curriculum ? { curriculum } : {}) });
  const { job, events } = await runJobToEnd(store, new Coordinator(deps), spec);
  return { job, spec, events, batches };}

test("a curriculum job stops drawing templates whose groups were all-pass or all-fail, stores its visits, and a restarted api draws the same batches", async () => {
  const plain = await run(undefined);
  const cur = await run({ window: 1, explore: 0 });
  assert.equal(cur.job.state, "JOB_STATE_SUCCEEDED");
  assert.equal(cur.batches.length, 12);
  const mid = (b: string[][]) => b.flat().filter((p) => templateOf(p) === "mid").length;
  // Once "easy" and "hard" were each visited (saturated), every later batch is "mid" only.
  const seen = (t: string) => cur.batches.findIndex((b) => b.some((p) => templateOf(p) === t));
  const after = Math.max(seen("easy"), seen("hard")) + 1;
  assert.ok(after < 6, `both saturated templates visited by step ${after}`);
  for (const [i, b] of cur.batches.entries()) if (i >= after) assert.deepEqual(b.map(templateOf), ["mid", "mid"], `step ${i + 1}`);
  assert.ok(mid(cur.batches) > mid(plain.batches) + 8, `mid rows: curriculum ${mid(cur.batches)}, plain ${mid(plain.batches)}`);
  // Step events: skipped rows counted; the informative fraction rises (plain draws a third "mid").
  const steps = cur.events.flatMap((e) => (e.step ? [e.step] : []));
  assert.ok(steps.reduce((a, s) => a + s.promptsSkipped, 0) > 0);
  assert.equal(plain.events.flatMap((e) => (e.step ? [e.step.promptsSkipped] : [])).reduce((a, b) => a + b, 0), 0);
  assert.equal(steps.at(-1)!.informativeFraction, 1);
  // Every step's visits are in Redis; a sampler loaded from them (a restarted api) draws the same batches.
  assert.equal(await bed.conn.hlen(curriculumVisitsKey(cur.job.id)), 12);
  assert.ok((await bed.conn.ttl(curriculumVisitsKey(cur.job.id))) > 0, "the visits expire");
  const rows = loadJobRows(cur.spec.dataset, cur.spec);
  const again = await loadCurriculumSampler(cur.job.id, rows, cur.spec, { redis: bed.conn });
  for (let step = 1; step <= 12; step++) assert.deepEqual(again!.draw(step).indices.map((i) => rows[i]!.prompt), cur.batches[step - 1], `step ${step}`);
  assert.equal(await loadCurriculumSampler(plain.job.id, rows, plain.spec, { redis: bed.conn }), null, "no curriculum: the plain shuffle");
});

test("curriculum visits: a group that lost samples to the infrastructure is not a visit; a job stored without spec.curriculum resumes without one", async () => {
  const scored = [
    ...[1, 1, 1, 1].map((reward) => ({ promptId: "0", reward })), // all pass, complete: saturated
    ...[0, 1, 0, 0].map((reward) => ({ promptId: "1", reward })), // mixed, complete: informative
    ...[0, 0, 0].map((reward) => ({ promptId: "2", reward })), // one sample dropped: not a visit
  ];
  assert.deepEqual(stepVisits([10, 11, 12], scored, 4), [
    { row: 10, saturated: true },
    { row: 11, saturated: false },
  ]);
  const { curriculum: _dropped, ...old } = normalizeSpec({ modelDir: bed.dir, dataset: { path: dataset } });
  const stored = old as unknown as Parameters<typeof loadCurriculumSampler>[2];
  assert.equal(await loadCurriculumSampler("j-old", [], stored, { redis: bed.conn }), null);
});
