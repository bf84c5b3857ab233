// JobStore against a real Redis: a step's event and the job's progress are recorded together and
// once, so a step retried after Redis died before the reply (the record went through) is not
// recorded twice.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { createRedis, startLocalRedis, type LocalRedis } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { join } from "node:path";
import { JobStore } from "./job-store.js";
import { normalizeSpec } from "./job-spec.js";

let redis: LocalRedis;
let conn: Redis;
before(async () => {
  redis = await startLocalRedis();
  conn = createRedis(redis.url, { role: "client" });
});
after(async () => {
  conn.disconnect();
  await redis.stop();
});

const stepEvent = (step: number, rewardMean: number) => ({ step: { step, rewardMean, passRate: 0, candidates: 8, policyVersion: step } });

test("recordStep appends the step event and the progress together, once per step", async () => {
  const store = new JobStore(conn);
  const spec = normalizeSpec({ name: "s", modelDir: join(REPO_ROOT, "models", "tiny-coder"), dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") }, steps: 3 });
  const job = await store.create(spec);
  const first = await store.recordStep(job.id, stepEvent(1, 0.5), { step: 1, policyVersion: 1, rewardMean: 0.5 });
  assert.equal(first.recorded, true);
  assert.equal(Number(first.job.step), 1);
  // The same step again (a retry after its record went through): nothing new is written.
  const again = await store.recordStep(job.id, stepEvent(1, 0.25), { step: 1, policyVersion: 1, rewardMean: 0.25 });
  assert.equal(again.recorded, false);
  assert.equal(again.job.rewardMean, 0.5, "the stored job is returned unchanged");
  const second = await store.recordStep(job.id, stepEvent(2, 0.75), { step: 2, policyVersion: 2, rewardMean: 0.75 });
  assert.equal(second.recorded, true);
  const events = await store.readEvents(job.id, 0);
  assert.deepEqual(
    events.filter((e) => e.step).map((e) => [Number(e.step!.step), e.step!.rewardMean]),
    [
      [1, 0.5],
      [2, 0.75],
    ],
  );
  const stored = await store.get(job.id);
  assert.equal(Number(stored!.step), 2);
  assert.equal(stored!.rewardMean, 0.75);
  assert.equal(Number(stored!.eventCount ?? events.length), events.length);
});

test("recordStep does not record a step over a job that ended meanwhile (a cancel during the step)", async () => {
  const store = new JobStore(conn);
  const spec = normalizeSpec({ name: "c", modelDir: join(REPO_ROOT, "models", "tiny-coder"), dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") }, steps: 3 });
  const job = await store.create(spec);
  await store.transition(job.id, "JOB_STATE_RUNNING", "started");
  await store.transition(job.id, "JOB_STATE_CANCELLED", "user");
  const r = await store.recordStep(job.id, stepEvent(1, 0.5), { step: 1, policyVersion: 1, rewardMean: 0.5 });
  assert.equal(r.recorded, false);
  assert.equal(r.job.state, "JOB_STATE_CANCELLED");
  const stored = await store.get(job.id);
  assert.equal(stored!.state, "JOB_STATE_CANCELLED", "the cancel stands");
  assert.equal(Number(stored!.step), 0);
  assert.equal((await store.readEvents(job.id, 0)).filter((e) => e.step).length, 0);
});
