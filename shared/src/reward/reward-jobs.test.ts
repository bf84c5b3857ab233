import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_REWARD_BATCH, type RewardJobData, groupRewardBatches, rewardBatchId } from "./reward-jobs.js";

const cand = (job: string, step: number, i: number): RewardJobData => ({
  job_id: job,
  step,
  sample_index: i,
  problem_id: "p",
  response: "",
  tests: { kind: "assert", tests: ["assert True"] },
});
const shape = (batches: ReturnType<typeof groupRewardBatches>) => batches.map((b) => b.candidates.map((c) => `${c.job_id}/${c.step}/${c.sample_index}`));

test("groupRewardBatches: in order, at most `size` each, never across a job or a step", () => {
  const jobs = [cand("a", 0, 0), cand("a", 0, 1), cand("a", 0, 2), cand("a", 1, 3), cand("b", 1, 4), cand("b", 1, 5)];
  assert.deepEqual(shape(groupRewardBatches(jobs, 2)), [["a/0/0", "a/0/1"], ["a/0/2"], ["a/1/3"], ["b/1/4", "b/1/5"]]);
  assert.deepEqual(shape(groupRewardBatches(jobs, 10)), [["a/0/0", "a/0/1", "a/0/2"], ["a/1/3"], ["b/1/4", "b/1/5"]]);
  assert.equal(groupRewardBatches(jobs, 1).length, jobs.length);
  assert.deepEqual(groupRewardBatches([], 4), []);
  const many = Array.from({ length: 200 }, (_, i) => cand("a", 0, i));
  assert.deepEqual(groupRewardBatches(many, 1000).map((b) => b.candidates.length), [64, 64, 64, 8]);
  assert.equal(MAX_REWARD_BATCH, 64);
});

test("rewardBatchId: the first candidate's id plus the count (a re-run's batches get the same ids; ':' never in an id)", () => {
  assert.equal(rewardBatchId({ candidates: [cand("job:1", 3, 8), cand("job:1", 3, 9)] }), "job_1-3-8-b2");
  assert.throws(() => rewardBatchId({ candidates: [] }), /at least one candidate/);
});
