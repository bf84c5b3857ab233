// `rlmesh eval` when the sandbox infrastructure fails: a candidate whose reward job fails for good
// (every attempt a sandbox_error, or its executor lost) is unscored — left out of the counts and
// of pass@k, named in a warning, exit code 3 — never a 0. Real Redis and BullMQ; the executor is
// replaced at the queue seam by a worker that scores HE/0 and fails HE/1's jobs the way a broken
// sandbox does (the real executor's sandbox failures are covered by the executor's own tests).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "bullmq";
import { createRedis, startLocalRedis, type LocalRedis } from "@rlmesh/shared";
import { DEFAULT_REWARD_QUEUE } from "@rlmesh/shared/reward/queue-names";
import type { RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { infraFailureReason, rewardResult } from "@rlmesh/shared/reward/reward-result";
import { EXIT_UNSCORED, evalCommand } from "./eval-command.js";

const HE_TWO = [
  { task_id: "HE/0", prompt: "def add(a, b):\n", entry_point: "add", canonical_solution: "    return a + b\n", test: "def check(candidate):\n    assert candidate(1, 2) == 3\n" },
  { task_id: "HE/1", prompt: "def neg(x):\n", entry_point: "neg", canonical_solution: "    return -x\n", test: "def check(candidate):\n    assert candidate(1) == -1\n" },
  { task_id: "HE/2", prompt: "def one():\n", entry_point: "one", canonical_solution: "    return 1\n", test: "def check(candidate):\n    assert candidate() == 1\n" },
];

let dir: string;
let redis: LocalRedis;
let worker: Worker<RewardJobData>;
let workerConnection: ReturnType<typeof createRedis>;
const savedUrl = process.env.REDIS_URL;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "rlmesh-eval-unscored-"));
  redis = await startLocalRedis();
  process.env.REDIS_URL = redis.url;
  worker = new Worker<RewardJobData>(
    DEFAULT_REWARD_QUEUE,
    async (job) => {
      if (job.data.problem_id === "HE/1") throw new Error(infraFailureReason("sandbox_error", "container exited 137 before the harness answered"));
      // HE/0 passes; HE/2's second sample comes back as a spent sandbox (an older executor's way).
      if (job.data.problem_id === "HE/2" && job.data.sample_index % 2 === 1) {
        return rewardResult({ status: "sandbox_error", tests_run: 0, tests_passed: 0, tests_total: 1, duration_ms: 1, reason: "sandbox spent" });
      }
      const ok = job.data.problem_id === "HE/0" || job.data.problem_id === "HE/2";
      return rewardResult({ status: ok ? "passed" : "failed", tests_run: 1, tests_passed: ok ? 1 : 0, tests_total: 1, duration_ms: 1, reason: "" });
    },
    { connection: (workerConnection = createRedis(redis.url, { role: "worker" })), concurrency: 4 },
  );
  await worker.waitUntilReady();
});

after(async () => {
  await worker.close();
  workerConnection.disconnect();
  await redis.stop();
  if (savedUrl === undefined) delete process.env.REDIS_URL;
  else process.env.REDIS_URL = savedUrl;
  rmSync(dir, { recursive: true, force: true });
});

test("eval leaves infrastructure-failed samples out of pass@k, names them and exits 3", { timeout: 60_000 }, async () => {
  const data = join(dir, "he.jsonl");
  writeFileSync(data, HE_TWO.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const samples = join(dir, "samples.jsonl");
  const line = (task_id: string) => JSON.stringify({ task_id, completion: "    pass\n" });
  writeFileSync(samples, [line("HE/0"), line("HE/0"), line("HE/1"), line("HE/1"), line("HE/2"), line("HE/2")].join("\n") + "\n");
  const results = join(dir, "results.jsonl");
  const lines: string[] = [];
  const stderr: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => (stderr.push(String(chunk)), true));
  let code: number;
  try {
    code = await evalCommand(["--dataset", data, "--solutions", samples, "--k", "1", "--results", results, "--json"], (l) => lines.push(l));
  } finally {
    process.stderr.write = write;
  }
  assert.equal(code, EXIT_UNSCORED, stderr.join(""));
  const s = JSON.parse(lines.at(-1)!);
  // 6 samples: HE/1's two failed for good, HE/2's second came back spent — 3 unscored, 3 scored (all pass).
  assert.equal(s.total, 3);
  assert.equal(s.passed, 3);
  assert.equal(s.unscored_samples, 3);
  assert.deepEqual(s.unscored_by_status, { sandbox_error: 3 });
  // HE/1 has no scored sample: it is left out of pass@k (not a 0), so pass@1 is 1 over HE/0 and HE/2.
  assert.deepEqual(s.pass_at_k, { "1": 1 });
  assert.equal(s.tasks, 2);
  const warn = stderr.join("");
  assert.match(warn, /3 of 6 sample\(s\) could not be scored .*\[sandbox_error ×3\].*not scored 0: HE\/1#0 \(failed: sandbox_error: container exited 137/);
  const perSample = readFileSync(results, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { task_id: string; reward: number | null; unscored?: string });
  assert.deepEqual(
    perSample.map((r) => [r.task_id, r.reward, r.unscored ?? null]),
    [
      ["HE/0", 1, null],
      ["HE/0", 1, null],
      ["HE/1", null, "sandbox_error"],
      ["HE/1", null, "sandbox_error"],
      ["HE/2", 1, null],
      ["HE/2", null, "sandbox_error"],
    ],
  );
});
