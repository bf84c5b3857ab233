// The console against a real Redis: a job and its event log written through the JobStore, a real
// BullMQ reward queue behind Bull Board, HTTP on loopback. What the pages show, the errors they
// give, and the read-only rule (with and without an operator token).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { Queue } from "bullmq";
import { createLogger, createRedis, loadConfig, startLocalRedis, type Job, type LocalRedis } from "@rlmesh/shared";
import type { TracedSample__Output as TracedSample } from "@rlmesh/shared/gen/rlmesh/v1/TracedSample";
import { API_CONFIG } from "../config.js";
import { JobStore } from "../job-store.js";
import { normalizeSpec } from "../job-spec.js";
import { startConsole, type ConsoleServer } from "./console-server.js";

const QUEUE = "reward-console-test";
const logger = createLogger("console-test");

async function seedJob(store: JobStore): Promise<Job> {
  const job = await store.create(
    normalizeSpec({ name: "console-seed", modelDir: "models/tiny-coder", dataset: { path: "datasets/toy/train.jsonl" }, steps: 3, traceSamplesPerStep: 1 }),
  );
  await store.transition(job.id, "JOB_STATE_RUNNING", "started");
  await store.appendEvent(job.id, { eval: { step: 0, passAt1: 0.35, ciLow: 0.287, ciHigh: 0.418, n: 200, responses: 200, split: "eval", mode: "greedy", policyVersion: 0 } });
  const steps = [
    { step: 1, rewardMean: 0.25, informativeFraction: 0.5, timings: { seconds: { rollout: 0.8, reward: 0.2, train: 1.5, push: 0.1 } }, train: { loss: 0.1 } },
    { step: 2, rewardMean: 0.375, informativeFraction: 0.75, timings: { seconds: { rollout: 0.7, reward: 0.3, train: 1.4, push: 0.1 } }, train: { loss: 0.2, guardAction: "rollback", guardReason: "reward mean 0.1 below 0.2" } },
    { step: 3, rewardMean: 0.5, informativeFraction: 0.25, timings: { seconds: { rollout: 0.9, reward: 0.2, train: 1.6, push: 0.1 } }, train: { loss: 0.3 } },
  ];
  for (const s of steps) await store.appendEvent(job.id, { step: { ...s, passRate: 0.5, candidates: 8, policyVersion: s.step } });
  await store.appendEvent(job.id, { eval: { step: 3, passAt1: 0.445, ciLow: 0.377, ciHigh: 0.515, n: 200, responses: 200, split: "eval", mode: "greedy", policyVersion: 3 } });
  await store.appendEvent(job.id, { log: { level: "warn", message: "collapse guard (held-out): rollback: pass@1 0.2 below best 0.4; policy v2" } });
  return store.update(job.id, { step: 3, rewardMean: 0.5, evalPassAt1: 0.445, jobRewardMean: 0.375, candidatesScored: 24 });
}

const trace = (step: number, reward: number): TracedSample => ({
  step,
  promptId: `task-${step}`,
  promptText: "def f(x):",
  tokenIds: [5, 6, 7],
  tokenTexts: ["return", " x", "+1"],
  commitSteps: [1, 3, 2],
  reward,
  policyVersion: step - 1,
  orderCorrelation: 0.5,
  nfe: 3,
});

describe("web console", { timeout: 60_000 }, () => {
  let redis: LocalRedis;
  let conn: Redis;
  let store: JobStore;
  let job: Job;
  let queue: Queue;
  let queueConn: Redis;

  before(async () => {
    redis = await startLocalRedis();
    conn = createRedis(redis.url, { role: "client" });
    store = new JobStore(conn);
    job = await seedJob(store);
    await store.appendTraces(job.id, [trace(1, 1)]);
    await store.appendTraces(job.id, [trace(2, 0)]);
    queueConn = createRedis(redis.url, { role: "worker" });
    queue = new Queue(QUEUE, { connection: queueConn });
    await queue.add("score", { job_id: job.id, step: 1, sample_index: 0 }, { jobId: `${job.id}-1-0` });
  });
  after(async () => {
    await queue?.close();
    queueConn?.disconnect();
    conn?.disconnect();
    await redis?.stop();
  });

  const open = (token: string, extra: Partial<Parameters<typeof startConsole>[0]> = {}) =>
    startConsole(
      {
        store,
        redis: conn,
        rewardQueue: QUEUE,
        token,
        logger,
        traces: (id) => store.readTraces(id),
        cancel: (id, reason) => store.transition(id, "JOB_STATE_CANCELLED", reason),
        ...extra,
      },
      "127.0.0.1",
      0,
    );

  test("the config keeps the console off and on loopback unless told otherwise", () => {
    const c = loadConfig(API_CONFIG, {});
    assert.equal(c.ui, false);
    assert.equal(c.uiHost, "127.0.0.1");
    assert.equal(c.uiToken, "");
    const on = loadConfig(API_CONFIG, { RLMESH_UI: "1", RLMESH_UI_PORT: "9999" });
    assert.deepEqual([on.ui, on.uiPort], [true, 9999]);
  });

  describe("read-only (no operator token configured)", () => {
    let ui: ConsoleServer;
    before(async () => {
      ui = await open("");
    });
    after(async () => {
      await ui?.close();
    });

    test("binds to loopback; the jobs list shows the job, its state and numbers", async () => {
      assert.equal(ui.host, "127.0.0.1");
      const res = await fetch(ui.url);
      assert.equal(res.status, 200);
      const html = await res.text();
      const row = new RegExp(`<tr class="job" data-job="${job.id}">([\\s\\S]*?)</tr>`).exec(html)?.[1] ?? "";
      assert.match(row, /data-state="RUNNING"/);
      assert.match(row, /<td class="num step">3 \/ 3<\/td>/);
      assert.match(row, /<td class="num eval">44\.5 %<\/td>/);
      assert.match(row, /<td class="num job-reward">0\.375<\/td>/);
      assert.match(html, /read-only/);
    });

    test("the job page: the eval curve with its intervals, reward, informative groups, time split, rollbacks, traces", async () => {
      const res = await fetch(`${ui.url}/jobs/${job.id}`);
      assert.equal(res.status, 200);
      const html = await res.text();
      const points = [...html.matchAll(/<circle class="point"[^>]*data-series="eval greedy" data-x="(\d+)" data-y="([\d.]+)" data-lo="([\d.]+)" data-hi="([\d.]+)"/g)].map((m) =>
        m.slice(1).map(Number),
      );
      assert.deepEqual(points, [
        [0, 0.35, 0.287, 0.418],
        [3, 0.445, 0.377, 0.515],
      ]);
      assert.match(html, /<polygon class="band"/);
      assert.match(html, /id="fact-eval"><span>held-out pass@1<\/span><b>44\.5 % <span class="muted">\[37\.7 %, 51\.5 %\]<\/span>/);
      assert.equal([...html.matchAll(/data-series="mean reward" data-x="\d+" data-y="([\d.]+)"/g)].map((m) => Number(m[1])).join(), "0.25,0.375,0.5");
      assert.match(html, /id="fact-informative"><span>[^<]*<\/span><b>50\.0 %<\/b>/);
      // Time split: one stacked bar per step and phase; the mean per phase.
      assert.equal([...html.matchAll(/<rect class="bar" data-x="2" data-phase="(\w+)" data-value="([\d.]+)"/g)].map((m) => `${m[1]}=${m[2]}`).join(), "rollout=0.7,reward=0.3,train=1.4,push=0.1");
      assert.match(html, /<span data-phase="train">train <b>1\.50 s<\/b>/);
      // Both rollbacks: the step-reward one (train stats) and the held-out one (log line).
      const guard = [...html.matchAll(/<tr class="guard-row" data-action="rollback"><td class="num">(\d+)<\/td><td>rollback<\/td><td>([^<]+)<\/td><td>([^<]+)</g)].map((m) => m.slice(1).join("|"));
      assert.deepEqual(guard, ["2|step reward|reward mean 0.1 below 0.2", "3|held-out pass@1|pass@1 0.2 below best 0.4"]);
      assert.match(html, /id="fact-rollbacks"><span>guard rollbacks<\/span><b>2<\/b>/);
      // Traces newest first, with rewards and a link into the viewer.
      const traces = [...html.matchAll(/<tr class="trace-row" data-step="(\d+)">[\s\S]*?<td class="num reward">([\d.]+)<\/td>[\s\S]*?<a href="([^"]+)">open in trace viewer/g)].map((m) => m.slice(1).join("|"));
      assert.deepEqual(traces, [`2|0.00|/ui/jobs/${job.id}/traces/1`, `1|1.00|/ui/jobs/${job.id}/traces/0`]);
      const viewer = await fetch(`${ui.url}/jobs/${job.id}/traces/1`);
      assert.equal(viewer.status, 200);
      const replay = await viewer.text();
      assert.match(replay, /<title>[^<]*step 2 · task-2/);
      assert.deepEqual([...replay.matchAll(/<span class="t[^"]*" data-s="(\d+)" data-p="(\d+)"[^>]*>([^<]*)</g)].map((m) => m.slice(1).join(":")), ["1:0:return", "3:1: x", "2:2:+1"]);
      // A running job's page refreshes itself; no cancel button without the operator token.
      assert.match(html, /http-equiv="refresh"/);
      assert.doesNotMatch(html, /cancel job/);
    });

    test("the JSON view carries the same numbers", async () => {
      const v = (await (await fetch(`${ui.url}/api/jobs/${job.id}`)).json()) as { evals: { points: { passAt1: number }[] }[]; phaseMeans: Record<string, number> };
      assert.deepEqual(
        v.evals[0]!.points.map((p) => p.passAt1),
        [0.35, 0.445],
      );
      assert.equal(v.phaseMeans.rollout!.toFixed(2), "0.80");
    });

    test("an unknown job is a 404 page naming it; malformed requests are 400s with a message, never blank", async () => {
      const cases: [string, number, RegExp][] = [
        [`/jobs/job-nope-0000`, 404, /no job job-nope-0000/],
        [`/jobs/bad%20id!`, 400, /malformed job id &quot;bad id!&quot;/],
        [`?state=BOGUS`, 400, /state must be one of QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, got &quot;BOGUS&quot;/],
        [`?limit=0`, 400, /limit must be an integer in \[1, 1000\], got &quot;0&quot;/],
        [`?colour=red`, 400, /unknown query parameter &quot;colour&quot;/],
        [`?state=RUNNING&state=FAILED`, 400, /state must be given once/],
        [`/jobs/${job.id}/traces/x`, 400, /trace index must be a non-negative integer, got &quot;x&quot;/],
        [`/jobs/${job.id}/traces/7`, 404, /has 2 stored traced sample\(s\)/],
        [`/nowhere`, 404, /nothing at \/ui\/nowhere/],
      ];
      for (const [path, status, message] of cases) {
        const res = await fetch(`${ui.url}${path}`);
        const body = await res.text();
        assert.equal(res.status, status, path);
        assert.match(res.headers.get("content-type") ?? "", /text\/html/, path);
        assert.match(body, message, path);
        assert.match(body, new RegExp(`<div class="code">${status}</div>`), path);
      }
      const res = await fetch(`${ui.url}/api/jobs/job-nope-0000`);
      assert.equal(res.status, 404);
      assert.deepEqual(((await res.json()) as { error: { status: number } }).error.status, 404);
    });

    test("nothing can be changed: every mutating route answers 403 (console and Bull Board), and nothing changed", async () => {
      const before = await queue.getJobCounts();
      const tries: [string, string, unknown][] = [
        ["POST", `/jobs/${job.id}/cancel`, undefined],
        ["POST", `/jobs`, { spec: {} }],
        ["PUT", `/queues/api/queues/${QUEUE}/pause`, undefined],
        ["PUT", `/queues/api/queues/pause`, undefined],
        ["POST", `/queues/api/queues/${QUEUE}/add`, { name: "x", data: {} }],
        ["PUT", `/queues/api/queues/${QUEUE}/empty`, undefined],
        ["PUT", `/queues/api/queues/${QUEUE}/${job.id}-1-0/clean`, undefined],
        ["PUT", `/queues/api/queues/${QUEUE}/obliterate`, {}],
        ["DELETE", `/jobs/${job.id}`, undefined],
        ["POST", `/login`, undefined],
      ];
      for (const [method, path, body] of tries) {
        const res = await fetch(`${ui.url}${path}`, {
          method,
          headers: { "content-type": "application/json", authorization: "Bearer guessed" },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        assert.equal(res.status, 403, `${method} ${path}`);
        assert.match(await res.text(), /read-only: no operator token is configured/, `${method} ${path}`);
      }
      assert.equal((await store.get(job.id))?.state, "JOB_STATE_RUNNING");
      assert.equal(await queue.isPaused(), false);
      assert.deepEqual(await queue.getJobCounts(), before);
      assert.equal((await fetch(`${ui.url}/admin/queues`)).status, 404, "no writable board without a token");
      assert.equal((await fetch(`${ui.url}/login`)).status, 404);
    });

    test("Bull Board is mounted at /ui/queues, read-only, with the reward queue and its job", async () => {
      const page = await fetch(`${ui.url}/queues`);
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.match(html, /rlmesh reward queue \(read-only\)/);
      const script = /<script[^>]+src="([^"]+\.js)"/.exec(html)?.[1];
      assert.ok(script, "Bull Board's page loads its bundle");
      const asset = await fetch(new URL(script, `${ui.url}/queues/`));
      assert.equal(asset.status, 200, "its static assets are served locally");
      const api = (await (await fetch(`${ui.url}/queues/api/queues`)).json()) as { queues: { name: string; readOnlyMode: boolean; counts: Record<string, number> }[] };
      const q = api.queues.find((x) => x.name === QUEUE);
      assert.ok(q, JSON.stringify(api));
      assert.equal(q.readOnlyMode, true);
      assert.equal(q.counts.waiting, 1);
    });
  });

  describe("with an operator token", () => {
    const TOKEN = "s3cret-operator-token";
    let ui: ConsoleServer;
    let other: Job;
    before(async () => {
      ui = await open(TOKEN);
      other = await store.create(normalizeSpec({ name: "to-cancel", modelDir: "models/tiny-coder", dataset: { path: "datasets/toy/train.jsonl" } }));
    });
    after(async () => {
      await ui?.close();
    });

    test("without the token or with a wrong one a mutation is 403; with it the job is cancelled", async () => {
      for (const auth of [undefined, "Bearer wrong", `Basic ${TOKEN}`]) {
        const res = await fetch(`${ui.url}/jobs/${other.id}/cancel`, { method: "POST", headers: auth ? { authorization: auth } : {} });
        assert.equal(res.status, 403, String(auth));
        assert.match(await res.text(), /read-only without the operator token/);
      }
      assert.equal((await store.get(other.id))?.state, "JOB_STATE_QUEUED");
      const ok = await fetch(`${ui.url}/jobs/${other.id}/cancel`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200);
      assert.equal((await store.get(other.id))?.state, "JOB_STATE_CANCELLED");
      const again = await fetch(`${ui.url}/jobs/${other.id}/cancel`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(again.status, 409);
    });

    test("the writable Bull Board is the operator's only; /ui/queues stays read-only even for the operator", async () => {
      assert.equal((await fetch(`${ui.url}/admin/queues`)).status, 403);
      const bearer = { authorization: `Bearer ${TOKEN}` };
      assert.equal((await fetch(`${ui.url}/admin/queues`, { headers: bearer })).status, 200);
      const ro = await fetch(`${ui.url}/queues/api/queues/${QUEUE}/pause`, { method: "PUT", headers: bearer });
      assert.equal(ro.status, 405, "Bull Board's own read-only mode");
      assert.equal(await queue.isPaused(), false);
      const pause = await fetch(`${ui.url}/admin/queues/api/queues/${QUEUE}/pause`, { method: "PUT", headers: bearer });
      assert.equal(pause.status, 200);
      assert.equal(await queue.isPaused(), true);
      await queue.resume();
    });

    test("login sets an HttpOnly SameSite=Strict cookie that opens the operator board; a cross-site POST with it is refused", async () => {
      const bad = await fetch(`${ui.url}/login`, { method: "POST", body: new URLSearchParams({ token: "nope" }), redirect: "manual" });
      assert.equal(bad.status, 403);
      const res = await fetch(`${ui.url}/login`, { method: "POST", body: new URLSearchParams({ token: TOKEN }), redirect: "manual" });
      assert.equal(res.status, 303);
      const cookie = res.headers.get("set-cookie") ?? "";
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /SameSite=Strict/);
      const jar = { cookie: cookie.split(";")[0]! };
      assert.equal((await fetch(`${ui.url}/admin/queues`, { headers: jar })).status, 200);
      const cross = await fetch(`${ui.url}/admin/queues/api/queues/${QUEUE}/pause`, { method: "PUT", headers: { ...jar, origin: "http://evil.example" } });
      assert.equal(cross.status, 403);
      // An opaque origin (a sandboxed frame sends "null") is refused too, not a 500.
      const opaque = await fetch(`${ui.url}/admin/queues/api/queues/${QUEUE}/pause`, { method: "PUT", headers: { ...jar, origin: "null" } });
      assert.equal(opaque.status, 403);
      assert.equal(await queue.isPaused(), false);
      // A malformed cookie is no token: the page answers, it does not fail.
      const garbled = await fetch(`${ui.url}/admin/queues`, { headers: { cookie: "rlmesh_ui_token=%E0%A4%A" } });
      assert.ok(garbled.status === 403 || garbled.status === 401, `status ${garbled.status}`);
    });
  });
});
