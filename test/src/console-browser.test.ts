// The web console in a real browser: a real local mesh (Redis, learner, rollout worker, executor
// with Docker sandboxes, the api with RLMESH_UI=1) runs a CI-sized RL job with held-out evals and
// traces while headless Chromium watches its page refresh until the job has succeeded and the
// curve has every eval; then the DOM's numbers are checked against GetJob, the event log and
// GetJobTraces, Bull Board's page against BullMQ's own counts, the read-only rule from inside the
// page, and an unknown job's error page. Screenshots land in test-artifacts/console-browser/
// (RLMESH_TEST_ARTIFACTS moves them). Without Chromium the suite fails at once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { call, createRedis, freePort, type Job, type JobEvent, type JobSpecIn } from "@rlmesh/shared";
import type { GetJobTracesResponse__Output as GetJobTracesResponse } from "@rlmesh/shared/gen/rlmesh/v1/GetJobTracesResponse";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { chromiumBinary, launchChromium, type Browser, type BrowserPage } from "./chromium.js";

const STEPS = 3;
const EVAL_LIMIT = 16;
const TRACES_PER_STEP = 2;
const ARTIFACTS = process.env.RLMESH_TEST_ARTIFACTS || join(REPO_ROOT, "test-artifacts", "console-browser");

const spec: JobSpecIn = {
  name: "console-browser",
  modelDir: DEFAULT_MODEL_DIR,
  seed: 3,
  steps: STEPS,
  promptsPerStep: 2,
  groupSize: 4,
  dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
  evalDataset: { path: join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), limit: EVAL_LIMIT },
  evalInterval: 1,
  traceSamplesPerStep: TRACES_PER_STEP,
  grpo: { lr: 1e-3, warmupSteps: 0 },
};

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

describe("web console in headless Chromium against a real mesh", { timeout: 600_000 }, () => {
  let mesh: LocalMesh;
  let browser: Browser;
  let page: BrowserPage;
  let ui: string;

  before(async () => {
    chromiumBinary(); // fails the suite loudly, before the mesh starts, when Chromium is missing
    mkdirSync(ARTIFACTS, { recursive: true });
    const uiPort = await freePort();
    ui = `http://127.0.0.1:${uiPort}/ui`;
    mesh = await startLocalMesh({
      rollouts: 1,
      executors: 1,
      modelDir: DEFAULT_MODEL_DIR,
      fixedPorts: false,
      stateDir: mkdtempSync(join(tmpdir(), "rlmesh-console-")),
      env: { RLMESH_UI: "1", RLMESH_UI_PORT: String(uiPort) },
    });
    browser = await launchChromium();
    page = await browser.newPage(1400, 900);
  });
  after(async () => {
    await browser?.close();
    await mesh?.stop();
  });

  test("a CI-sized job: the page follows it to the end, then shows its actual numbers; Bull Board shows the reward queue; nothing can be changed", async (t) => {
    const client = jobClient(mesh.apiAddr);
    const submitted = await jobs.submit(client, spec);
    const id = submitted.id;
    // Open the job page at once: it refreshes itself while the job runs. Follow the job over gRPC
    // meanwhile (the truth the page is checked against).
    const eventsP = (async () => {
      const out: JobEvent[] = [];
      for await (const e of jobs.watch(client, id)) out.push(e);
      return out;
    })();
    assert.equal(await page.goto(`${ui}/jobs/${id}`), 200);
    await page.waitFor(`document.querySelector("#job-id")?.dataset.job === ${JSON.stringify(id)}`, "the job page");
    const events = await eventsP;
    const job: Job = await jobs.get(client, id);
    assert.equal(job.state, "JOB_STATE_SUCCEEDED", JSON.stringify(events.filter((e) => e.log || e.state)));
    const evals = events.filter((e) => e.eval && e.eval.split === "eval" && e.eval.mode === "greedy").map((e) => e.eval!);
    const steps = events.filter((e) => e.step).map((e) => e.step!);
    assert.equal(evals.length, STEPS + 1, "an eval before the first step and after each");
    assert.equal(steps.length, STEPS);

    // Wait for the curve: the page (reloading every few seconds) reaches SUCCEEDED with every eval point.
    const waited = Date.now();
    await page.waitFor(
      `document.querySelector("#fact-state [data-state]")?.dataset.state === "SUCCEEDED" && document.querySelectorAll('#pass-curve circle.point[data-series="eval greedy"]').length === ${evals.length}`,
      "the finished job's curve",
      60_000,
    );
    t.diagnostic(`the page showed the finished curve ${Date.now() - waited} ms after the job ended`);
    await page.screenshot(join(ARTIFACTS, "console-job.png"));

    // The curve's points and intervals are the eval events' numbers, in step order.
    const points = await page.evaluate<number[][]>(
      `[...document.querySelectorAll('#pass-curve circle.point[data-series="eval greedy"]')].map(c => [+c.dataset.x, +c.dataset.y, +c.dataset.lo, +c.dataset.hi])`,
    );
    assert.deepEqual(
      points,
      evals.map((e) => [Number(e.step), e.passAt1, e.ciLow, e.ciHigh]),
    );
    assert.ok(await page.evaluate<boolean>(`!!document.querySelector("#pass-curve polygon.band")`), "the 95 % band is drawn");
    const text = (sel: string) => page.evaluate<string>(`document.querySelector(${JSON.stringify(sel)})?.innerText.trim() ?? ""`);
    const last = evals.at(-1)!;
    assert.equal(await text("#fact-eval b"), `${pct(job.evalPassAt1)} [${pct(last.ciLow)}, ${pct(last.ciHigh)}]`);
    assert.equal(job.evalPassAt1, last.passAt1);
    assert.equal(await text("#fact-step b"), `${job.step} / ${STEPS}`);
    assert.equal(await text("#fact-reward b"), job.rewardMean.toFixed(3));
    assert.equal(await text("#fact-job-reward b"), job.jobRewardMean.toFixed(3));
    assert.equal(await text("#fact-candidates b"), String(job.candidatesScored));
    assert.equal(await text("#fact-policy b"), `v${job.policyVersion}`);
    // Mean reward and informative fraction per step; the time split per step and phase.
    const rewards = await page.evaluate<number[]>(`[...document.querySelectorAll('#reward-curve circle[data-series="mean reward"]')].map(c => +c.dataset.y)`);
    assert.deepEqual(
      rewards,
      steps.map((s) => s.rewardMean),
    );
    const informative = await page.evaluate<number[]>(`[...document.querySelectorAll('#reward-curve circle[data-series="informative groups"]')].map(c => +c.dataset.y)`);
    assert.deepEqual(
      informative,
      steps.map((s) => s.informativeFraction),
    );
    const bars = await page.evaluate<string[]>(`[...document.querySelectorAll('#time-split rect.bar')].map(r => r.dataset.x + ":" + r.dataset.phase + "=" + r.dataset.value)`);
    const expectedBars = steps.flatMap((s) =>
      Object.entries(s.timings?.seconds ?? {})
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${s.step}:${k}=${v}`),
    );
    assert.deepEqual([...bars].sort(), [...expectedBars].sort());
    assert.ok(bars.some((b) => b.includes(":train=")), "the train phase is in the split");
    // The guard: as many rollbacks on the page as in the event log (a healthy CI job has none).
    const rollbacks = steps.filter((s) => s.train?.guardAction === "rollback").length + events.filter((e) => /^collapse guard \(held-out\): rollback/.test(e.log?.message ?? "")).length;
    assert.equal(await text("#fact-rollbacks b"), String(rollbacks));
    assert.equal(await page.evaluate<number>(`document.querySelectorAll("#guard tr.guard-row").length`), rollbacks);
    // Traced rollouts: the page's rows are GetJobTraces' samples (newest first) with their rewards.
    const traced = await call<GetJobTracesResponse>((cb) => client.getJobTraces({ id, fromStep: 0, limit: 0 }, cb));
    assert.ok(traced.samples.length > 0, "the job kept traced samples");
    const rows = await page.evaluate<string[]>(`[...document.querySelectorAll("#traces tr.trace-row")].map(r => r.dataset.step + "|" + r.querySelector(".reward").innerText)`);
    assert.deepEqual(
      rows,
      [...traced.samples]
        .reverse()
        .slice(0, 20)
        .map((s) => `${s.step}|${s.reward.toFixed(2)}`),
    );
    client.close();

    // The trace viewer opens from the page's link.
    const href = await page.evaluate<string>(`document.querySelector("#traces a")?.href ?? ""`);
    assert.match(href, new RegExp(`/ui/jobs/${id}/traces/\\d+$`));
    assert.equal(await page.goto(href), 200);
    await page.waitFor(`document.body.dataset.ready === "1"`, "the trace viewer's script");
    await page.screenshot(join(ARTIFACTS, "console-trace.png"));

    // The jobs list: the job's row with its state and numbers.
    assert.equal(await page.goto(ui), 200);
    const row = await page.waitFor<string[]>(
      `(r => r && [r.querySelector("[data-state]").dataset.state, r.querySelector(".step").innerText, r.querySelector(".eval").innerText, r.querySelector(".job-reward").innerText])(document.querySelector('tr.job[data-job=${JSON.stringify(id)}]'))`,
      "the job's row in the list",
    );
    assert.deepEqual(row, ["SUCCEEDED", `${STEPS} / ${STEPS}`, pct(job.evalPassAt1), job.jobRewardMean.toFixed(3)]);
    await page.screenshot(join(ARTIFACTS, "console-jobs.png"));

    // Bull Board: the reward queue with the completed count BullMQ itself reports.
    const conn = createRedis(mesh.redisUrl, { role: "worker" });
    const queue = new Queue("reward", { connection: conn });
    const counts = await queue.getJobCounts();
    await queue.close();
    conn.disconnect(); // BullMQ leaves a connection it was given open
    assert.ok((counts.completed ?? 0) >= steps.reduce((a, s) => a + s.candidates, 0), JSON.stringify(counts));
    assert.equal(await page.goto(`${ui}/queues`), 200);
    const board = await page.waitFor<string>(`(t => /COMPLETED\\s*\\n\\s*\\d+/.test(t) && t)(document.body.innerText)`, "Bull Board's queue card", 30_000);
    assert.match(board, /rlmesh reward queue \(read-only\)/);
    assert.equal(Number(/COMPLETED\s*\n\s*(\d+)/.exec(board)?.[1]), counts.completed);
    await page.screenshot(join(ARTIFACTS, "console-queues.png"));
    // From inside the page: Bull Board's own API reads, but every change is refused.
    const fromPage = await page.evaluate<number[]>(
      `Promise.all([fetch("/ui/queues/api/queues").then(r => r.status), fetch("/ui/queues/api/queues/reward/pause", {method: "PUT"}).then(r => r.status), fetch("/ui/queues/api/queues/reward/empty", {method: "PUT"}).then(r => r.status), fetch("/ui/jobs/${id}/cancel", {method: "POST"}).then(r => r.status)])`,
    );
    assert.deepEqual(fromPage, [200, 403, 403, 403]);
    assert.deepEqual(page.errors.messages.filter((m) => !/403/.test(m)), [], "no script error in the pages");

    // An unknown job: a 404 page that says so.
    assert.equal(await page.goto(`${ui}/jobs/job-unknown-0000`), 404);
    assert.match(await text("#error .message"), /no job job-unknown-0000/);
    await page.screenshot(join(ARTIFACTS, "console-404.png"));
    for (const f of ["console-job.png", "console-trace.png", "console-jobs.png", "console-queues.png", "console-404.png"])
      assert.ok(statSync(join(ARTIFACTS, f)).size > 5000, `${f} is a real screenshot`);
    t.diagnostic(`screenshots in ${ARTIFACTS}`);
  });
});
