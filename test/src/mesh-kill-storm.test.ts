// The `docker kill` storm through a whole RL job on the real local mesh (real processes, Redis,
// Docker, gRPC, onnxruntime): a CI-sized job runs once cleanly, then again with the same spec and
// seed while the executor's sandbox containers (found by the labels its Docker backend sets: the
// owner id and the executor's pid) are killed every 0.3 s. The storm job must end SUCCEEDED with
// steps contiguous and each recorded once, or FAILED naming the infrastructure-failure rate; every
// dropped candidate is named in the job's events and counted by rlmesh_reward_samples_dropped_total;
// no scored candidate carries a sandbox's 0 (its reward equals the clean run's for the same
// candidate, or a clean re-score's where the policy diverged after a drop); and every candidate
// has exactly one reward job, finished, completed at most once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Job as BullJob, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { createRedis, type Job, type JobEvent } from "@rlmesh/shared";
import { enqueueRewardJobs, type RewardJobData } from "@rlmesh/shared/reward/reward-jobs";
import { classifyFailedReason, type RewardResult } from "@rlmesh/shared/reward/reward-result";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { SANDBOX_OWNER_LABEL, SANDBOX_PID_LABEL } from "@rlmesh/executor/docker-sandbox";
import { requireDockerAndImage } from "@rlmesh/executor/test-support";

const STEPS = 3;
const PROMPTS = 4;
const GROUP = 8;
const SEED = 1;
const KILL_EVERY_MS = 300;
const EXECUTOR = "executor-0";

let mesh: LocalMesh;
let redis: Redis;
let queue: Queue;
const lines: string[] = [];

before(async () => {
  await requireDockerAndImage();
  mesh = await startLocalMesh({
    rollouts: 1,
    executors: 1,
    modelDir: DEFAULT_MODEL_DIR,
    fixedPorts: false,
    stateDir: mkdtempSync(join(tmpdir(), "rlmesh-mesh-storm-")),
    // The storm is Docker-specific: the executor must run Docker sandboxes whatever the caller's env says.
    env: { RLMESH_SANDBOX_BACKEND: "docker" },
    log: (l) => lines.push(l),
  });
  redis = createRedis(mesh.redisUrl, { role: "worker" });
  queue = new Queue("reward", { connection: redis });
});
after(async () => {
  await queue?.close();
  redis?.disconnect();
  await mesh?.stop();
});

const spec = (name: string) => ({
  name,
  modelDir: DEFAULT_MODEL_DIR,
  seed: SEED,
  steps: STEPS,
  promptsPerStep: PROMPTS,
  groupSize: GROUP,
  dataset: { path: join(REPO_ROOT, "datasets", "toy", "train.jsonl") },
});
const logs = (events: JobEvent[]) => events.filter((e) => e.log).map((e) => `${e.log!.level}: ${e.log!.message}`);

async function runJob(name: string): Promise<{ job: Job; events: JobEvent[] }> {
  const client = jobClient(mesh.apiAddr);
  const submitted = await jobs.submit(client, spec(name));
  const events: JobEvent[] = [];
  for await (const e of jobs.watchResilient(client, submitted.id, 0, { giveUpMs: 60_000 })) events.push(e);
  const job = await jobs.get(client, submitted.id);
  client.close();
  return { job, events };
}

/** rlmesh_reward_samples_dropped_total{phase="train"} summed over reasons, from the api's /metrics. */
async function droppedMetric(): Promise<number> {
  const api = mesh.processes.find((p) => p.name === "api")!;
  const text = await (await fetch(`http://127.0.0.1:${api.metricsPort}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^rlmesh_reward_samples_dropped_total\{([^}]*)\} (\S+)$/gm))
    if (/phase="train"/.test(m[1]!)) n += Number(m[2]);
  return n;
}

/** One candidate's reward job as Redis holds it. */
interface RewardRecord {
  step: number;
  sample: number;
  state: string;
  data: RewardJobData;
  /** Reward of a completed job whose result is a verdict; null when the infrastructure failed. */
  reward: number | null;
  status: string;
  attempts: number;
}

/** Every reward job of `jobId` in the queue, whatever its state, keyed `step-sample`. */
async function rewardJobs(jobId: string): Promise<Map<string, RewardRecord>> {
  const all = await queue.getJobs(
    ["completed", "failed", "waiting", "active", "delayed", "prioritized", "paused", "waiting-children"],
    0,
    -1,
  );
  const out = new Map<string, RewardRecord>();
  for (const j of all as BullJob<RewardJobData, RewardResult>[]) {
    if (!j?.id?.startsWith(`${jobId}-`)) continue;
    const state = await j.getState();
    const result = j.returnvalue as RewardResult | null;
    const infra = state === "failed" ? classifyFailedReason(j.failedReason) : result?.status === "sandbox_error" ? "sandbox_error" : null;
    const key = `${j.data.step}-${j.data.sample_index}`;
    assert.ok(!out.has(key), `two reward jobs for ${jobId} candidate ${key}`);
    out.set(key, {
      step: j.data.step,
      sample: j.data.sample_index,
      state,
      data: j.data,
      reward: infra || state !== "completed" ? null : result!.reward,
      status: infra ?? result?.status ?? state,
      attempts: j.attemptsMade,
    });
  }
  return out;
}

/** Completed events per reward job id in BullMQ's event stream (a job scored twice shows two). */
async function completedEvents(jobId: string): Promise<Map<string, number>> {
  const n = new Map<string, number>();
  const entries = await redis.xrange("bull:reward:events", "-", "+");
  for (const [, fields] of entries) {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
    const id = f.get("jobId") ?? "";
    if (f.get("event") === "completed" && id.startsWith(`${jobId}-`)) n.set(id, (n.get(id) ?? 0) + 1);
  }
  return n;
}

/** Scores candidates again, cleanly (no storm), through the same queue and executor. */
async function rescore(data: RewardJobData[]): Promise<RewardResult[]> {
  const connection = redis.duplicate();
  const events = new QueueEvents("reward", { connection });
  try {
    await events.waitUntilReady();
    const added = await enqueueRewardJobs(
      queue,
      data.map((d) => ({ ...d, job_id: `rescore-${d.job_id}` })),
    );
    return await Promise.all(added.map((j) => j.waitUntilFinished(events, 120_000) as Promise<RewardResult>));
  } finally {
    await events.close();
    connection.disconnect(); // BullMQ leaves a connection it was given open
  }
}

test(
  "docker kill of the executor's sandboxes every 0.3 s through a whole RL job: a named failure or the clean run's result, never a sandbox's 0",
  { timeout: 600_000 },
  async (t) => {
    const t0 = Date.now();
    const docker = await requireDockerAndImage();
    const clean = await runJob("storm-clean");
    assert.equal(clean.job.state, "JOB_STATE_SUCCEEDED", logs(clean.events).join("\n"));
    const cleanJobs = await rewardJobs(clean.job.id);
    assert.equal(cleanJobs.size, STEPS * PROMPTS * GROUP, "clean run: one reward job per candidate");
    for (const r of cleanJobs.values()) assert.ok(r.reward !== null, `clean run: ${r.step}-${r.sample} was scored (${r.status})`);
    const cleanSeconds = (Date.now() - t0) / 1000;

    const droppedBefore = await droppedMetric();
    let kills = 0;
    let stop = false;
    const killer = (async () => {
      while (!stop) {
        // Only this mesh's executor's containers: its owner id and its pid (another test's mesh may
        // also call its executor executor-0).
        const pid = mesh.processes.find((p) => p.name === EXECUTOR)!.proc.pid;
        const list = await docker
          .listContainers({ filters: { label: [`${SANDBOX_OWNER_LABEL}=${EXECUTOR}`, `${SANDBOX_PID_LABEL}=${pid}`] } })
          .catch(() => []);
        await Promise.all(
          list.map((c) =>
            docker
              .getContainer(c.Id)
              .kill()
              .then(
                () => kills++,
                () => undefined,
              ),
          ),
        );
        await new Promise((r) => setTimeout(r, KILL_EVERY_MS));
      }
    })();
    const t1 = Date.now();
    let storm: { job: Job; events: JobEvent[] };
    try {
      storm = await runJob("storm");
    } finally {
      stop = true;
      await killer;
    }
    const stormSeconds = (Date.now() - t1) / 1000;
    const said = logs(storm.events).join("\n");
    assert.deepEqual(mesh.restarts(), {}, `no service died in the storm (the dropped metric would restart from 0):\n${lines.join("\n")}`);
    assert.ok(kills > 0, "the storm killed sandboxes");

    // The job's end: SUCCEEDED with every step once, or FAILED naming the infrastructure-failure rate.
    const steps = storm.events.filter((e) => e.step).map((e) => Number(e.step!.step));
    if (storm.job.state === "JOB_STATE_SUCCEEDED") {
      assert.deepEqual(
        steps,
        Array.from({ length: STEPS }, (_, i) => i + 1),
        "each step recorded once, in order",
      );
    } else {
      assert.equal(storm.job.state, "JOB_STATE_FAILED", said);
      assert.match(
        storm.job.error,
        /step \d+: infrastructure-failure rate [\d.]+ % \(\d+ of \d+ candidates got no reward: .*\) is above the limit of [\d.]+ % \(RLMESH_MAX_INFRA_FAILURE_RATE\)/,
        storm.job.error,
      );
      assert.deepEqual(
        steps,
        Array.from({ length: steps.length }, (_, i) => i + 1),
        "the steps before the failure, each once, in order",
      );
    }

    // Every candidate of every step that ran has exactly one reward job, finished (none lost or left
    // queued), and a completed one was completed once (no double score).
    const stormJobs = await rewardJobs(storm.job.id);
    const ran = Math.max(0, ...[...stormJobs.values()].map((r) => r.step));
    assert.ok(ran >= steps.length, `reward jobs exist for each recorded step (${ran} < ${steps.length})`);
    for (let step = 1; step <= ran; step++)
      for (let s = 0; s < PROMPTS * GROUP; s++) {
        const r = stormJobs.get(`${step}-${s}`);
        assert.ok(r, `step ${step} candidate #${s} has a reward job`);
        assert.ok(r.state === "completed" || r.state === "failed", `step ${step} #${s} finished (${r.state})`);
      }
    assert.equal(stormJobs.size, ran * PROMPTS * GROUP, "no reward job beyond the job's candidates");
    const completions = await completedEvents(storm.job.id);
    for (const [id, n] of completions) assert.equal(n, 1, `${id} completed ${n} times`);
    assert.equal(
      completions.size,
      [...stormJobs.values()].filter((r) => r.state === "completed").length,
      "a completed event per completed reward job",
    );

    // Every dropped candidate is named in its step's event and counted by the metric.
    const dropped = [...stormJobs.values()].filter((r) => r.reward === null);
    for (const d of dropped) {
      const named = storm.events.some(
        (e) =>
          e.log &&
          e.log.message.startsWith(`step ${d.step}: dropped `) &&
          e.log.message.includes(`#${d.sample} ${d.data.problem_id} (${d.status}:`),
      );
      assert.ok(named, `step ${d.step} #${d.sample} (${d.status}) is named in the job's events:\n${said}`);
    }
    assert.equal(
      (await droppedMetric()) - droppedBefore,
      dropped.length,
      "rlmesh_reward_samples_dropped_total counts each dropped candidate",
    );

    // Rollouts are deterministic for a seed: step 1 (before any training) is the clean run's, and so
    // is each later step while no sample was dropped before it (the policy trained on the same groups).
    const firstDrop = Math.min(Infinity, ...dropped.map((d) => d.step));
    let sameCandidates = 0;
    for (const r of stormJobs.values()) {
      if (r.step > firstDrop) continue;
      const c = cleanJobs.get(`${r.step}-${r.sample}`)!;
      assert.equal(r.data.problem_id, c.data.problem_id, `step ${r.step} #${r.sample}: the same prompt as the clean run`);
      assert.equal(r.data.response, c.data.response, `step ${r.step} #${r.sample}: the same rollout as the clean run`);
      sameCandidates++;
    }
    // No scored candidate carries a sandbox's 0: its reward is the clean run's for the same candidate
    // (prompt and response), or — where the policy diverged after a drop — a clean re-score's.
    const cleanReward = new Map([...cleanJobs.values()].map((c) => [`${c.data.problem_id}\0${c.data.response}`, c]));
    const scored = [...stormJobs.values()].filter((r) => r.reward !== null);
    const unmatched = scored.filter((r) => !cleanReward.has(`${r.data.problem_id}\0${r.data.response}`));
    for (const r of scored) {
      const c = cleanReward.get(`${r.data.problem_id}\0${r.data.response}`);
      if (c)
        assert.equal(
          r.reward,
          c.reward,
          `step ${r.step} #${r.sample}: the clean run's reward for the same candidate (${r.status} vs ${c.status})`,
        );
    }
    const again = await rescore(unmatched.map((r) => r.data));
    for (const [i, r] of unmatched.entries())
      assert.equal(
        r.reward,
        again[i]!.reward,
        `step ${r.step} #${r.sample}: a clean re-score's reward (${r.status} vs ${again[i]!.status})`,
      );

    // The comparison can only catch a wrongful 0 if the candidates it compares include passing ones.
    assert.ok(
      scored.some((r) => (r.reward ?? 0) > 0),
      "some compared candidate has reward > 0 (else a sandbox's 0 would be indistinguishable from a fail)",
    );

    const retried = [...stormJobs.values()].filter((r) => r.attempts > 1).length;
    assert.ok(retried + dropped.length > 0, "the storm hit reward jobs (retried or dropped)");
    t.diagnostic(
      `clean run ${cleanSeconds.toFixed(1)} s; storm run ${stormSeconds.toFixed(1)} s: ${kills} sandbox kills, job ${storm.job.state} after ${steps.length} step(s)` +
        `${storm.job.error ? ` (${storm.job.error.slice(0, 120)}…)` : ""}; ${stormJobs.size} candidates: ${scored.length} scored ` +
        `(${scored.length - unmatched.length} equal to the clean run's, ${unmatched.length} to a re-score; ${sameCandidates} identical rollouts checked), ` +
        `${retried} retried, ${dropped.length} dropped: ${dropped.map((d) => `step ${d.step} #${d.sample} ${d.status}`).join(", ") || "none"}`,
    );
  },
);
