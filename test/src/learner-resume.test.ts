// A learner process killed with SIGKILL in the middle of a TrainStep restarts from its last
// checkpoint and, given the same TrainStep again, produces exactly the update an uninterrupted
// learner makes (weights checksum and stats), and replays an already-applied step.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readdir } from "node:fs/promises";
import { startLocalRedis, weightsChecksum, type LearnerStatus, type LocalRedis, type TrainStepRequestIn, type TrainStepResponse } from "@rlmesh/shared";
import { fetchWeights } from "@rlmesh/learner/testing/weight-sink";
import { writeRandomModelDir } from "@rlmesh/learner/testing/random-model-dir";
import { startJob, startLearner, syntheticSamples, tempDir, trainStep, type LearnerProcess } from "./learner-harness.js";

const EOS = 2;
let redis: LocalRedis | undefined;
const tmp = await tempDir("rlmesh-learner-resume-");
const running: LearnerProcess[] = [];
after(async () => {
  for (const l of running) await l.stop("SIGKILL");
  await redis?.stop();
  await tmp.remove();
});

function step(n: number, version: number): TrainStepRequestIn {
  // A batch big enough that one step takes a noticeable time on CPU (the kill must land inside it).
  return {
    jobId: "job-resume",
    step: n,
    samples: syntheticSamples({ groups: 4, perGroup: 4, responseLen: 40, policyVersion: version, jobId: "job-resume", eosId: EOS, salt: n }),
    params: { lr: 2e-3, warmupSteps: 0 },
    seed: 1234 + n,
  };
}

/** Stats that must be identical between two learners given the same inputs. */
function comparable(r: TrainStepResponse): Record<string, unknown> {
  const { seconds: _s, replayed: _r, ...rest } = r.stats!;
  return { policyVersion: r.policyVersion, ...rest };
}

test("SIGKILL during a TrainStep, restart, the same TrainStep gives the uninterrupted learner's update", { timeout: 300_000 }, async () => {
  redis = await startLocalRedis();
  const modelDir = await writeRandomModelDir(join(tmp.path, "model"), "ci", 3, 128);

  // Reference: a learner that is never interrupted.
  const ref = await startLearner({ modelDir, checkpointDir: join(tmp.path, "ckpt-ref"), redisUrl: redis.url });
  running.push(ref);
  assert.equal((await startJob(ref.client, { jobId: "job-resume", modelDir })).policyVersion, 0);
  const ref1 = await trainStep(ref.client, step(1, 0));
  assert.equal(ref1.policyVersion, 1);
  const ref2 = await trainStep(ref.client, step(2, 1));
  assert.equal(ref2.policyVersion, 2);
  const refWeights = await fetchWeights(ref.address);
  assert.equal(refWeights.version, 2);
  await ref.stop();
  const stepMs = ref2.stats!.seconds * 1000;

  // The learner under test: step 1, then SIGKILL while step 2 runs.
  const ckpt = join(tmp.path, "ckpt-crash");
  const a = await startLearner({ modelDir, checkpointDir: ckpt, redisUrl: redis.url });
  running.push(a);
  await startJob(a.client, { jobId: "job-resume", modelDir });
  const a1 = await trainStep(a.client, step(1, 0));
  assert.deepEqual(comparable(a1), comparable(ref1));
  const inFlight = trainStep(a.client, step(2, 1)).then(
    () => "answered",
    (err: Error) => `failed: ${err.message}`,
  );
  await new Promise((r) => setTimeout(r, Math.max(20, stepMs * 0.3)));
  await a.stop("SIGKILL");
  const outcome = await inFlight;
  assert.match(outcome, /^failed: /, `the kill must land inside step 2 (step takes ~${stepMs.toFixed(0)} ms)`);
  // Whatever the kill interrupted, only complete checkpoints have final names.
  const names = await readdir(join(ckpt, "jobs", "job-resume"));
  assert.ok(
    names.every((n) => /^ckpt-\d{12}$/.test(n) || n.startsWith(".tmp-ckpt-")),
    names.join(","),
  );

  const b = await startLearner({ modelDir, checkpointDir: ckpt, redisUrl: redis.url });
  running.push(b);
  // The restarted learner went on with its job (active-job.json) before any StartJob.
  assert.equal((await new Promise<LearnerStatus>((res, rej) => b.client.getStatus({}, (e, s) => (e ? rej(e) : res(s!))))).jobId, "job-resume");
  // The api's retry of step 1 is answered from the record, without training again.
  const replay1 = await trainStep(b.client, step(1, 0));
  assert.equal(replay1.stats!.replayed, true);
  assert.deepEqual(comparable(replay1), comparable(ref1));
  const b2 = await trainStep(b.client, step(2, 1));
  assert.deepEqual(comparable(b2), comparable(ref2));
  const bWeights = await fetchWeights(b.address);
  assert.equal(bWeights.version, 2);
  assert.equal(
    weightsChecksum(bWeights.tensors),
    weightsChecksum(refWeights.tensors),
    "weights after the resumed step equal the uninterrupted learner's",
  );
  await b.stop();
});
