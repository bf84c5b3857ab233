// The weight push end to end between real processes: a learner (services/learner/dist/main.js)
// and two real rollout workers (services/rollout/dist/main.js, onnxruntime), registered in a
// private Redis. One worker is SIGKILLed (its registry entry outlives it, as after a crash): the
// next push skips it and reports it; restarted, it catches up through GetWeights before it takes
// traffic, and the following push reaches both again.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  call,
  createClient,
  createLogger,
  createRedis,
  freePort,
  listWorkers,
  loadProto,
  startLocalRedis,
  type LocalRedis,
  type ModelInfo,
  type RolloutServiceClient,
} from "@rlmesh/shared";
import { writeRandomModelDir } from "@rlmesh/learner/testing/random-model-dir";
import { startService, waitServing, type ServiceProcess } from "./helpers.js";
import { startJob, startLearner, syntheticSamples, tempDir, trainStep, type LearnerProcess } from "./learner-harness.js";

const EOS = 2;
const tmp = await tempDir("rlmesh-learner-push-rollout-");
let redis: LocalRedis | undefined;
let learner: LearnerProcess | undefined;
const workers: ServiceProcess[] = [];
after(async () => {
  for (const w of workers) await w.stop("SIGKILL");
  await learner?.stop("SIGKILL");
  await redis?.stop();
  await tmp.remove();
});

async function startRollout(id: string, port: number, modelDir: string, learnerAddr: string): Promise<ServiceProcess> {
  const launchedAt = Date.now();
  const svc = startService("rollout", {
    REDIS_URL: redis!.url,
    RLMESH_MODEL_DIR: modelDir,
    RLMESH_LEARNER_ADDR: learnerAddr,
    RLMESH_WORKER_ID: id,
    RLMESH_ROLLOUT_PORT: String(port),
    RLMESH_ROLLOUT_METRICS_PORT: String(await freePort()),
    RLMESH_ORT_THREADS: "1",
    // Only start-up catch-up: what reaches a live worker here must come from the push.
    RLMESH_CATCHUP_INTERVAL_MS: "600000",
  });
  workers.push(svc);
  await waitServing(`127.0.0.1:${port}`, 60_000, svc);
  // A worker registers after its start-up catch-up, a moment after it serves (a killed one's
  // entry lingers until its TTL, so wait for an entry written by this process).
  const r = createRedis(redis!.url, { role: "client", logger: createLogger("test", { level: "error" }) });
  try {
    const deadline = Date.now() + 30_000;
    while (!(await listWorkers(r, "rollout")).some((w) => w.id === id && (w.updatedAtMs ?? 0) >= launchedAt)) {
      if (Date.now() > deadline) throw new Error(`${id} did not register\n${svc.output()}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    r.disconnect();
  }
  return svc;
}

async function servedPolicy(port: number): Promise<{ jobId: string; version: number }> {
  const c = createClient<RolloutServiceClient>(loadProto().proto.rlmesh.v1.RolloutService, `127.0.0.1:${port}`);
  try {
    const info = await call<ModelInfo>((cb) => c.getModelInfo({}, { deadline: new Date(Date.now() + 10_000) }, cb));
    return { jobId: info.policyJobId, version: Number(info.policyVersion) };
  } finally {
    c.close();
  }
}

async function servedVersion(port: number): Promise<number> {
  const c = createClient<RolloutServiceClient>(loadProto().proto.rlmesh.v1.RolloutService, `127.0.0.1:${port}`);
  try {
    return (await call<ModelInfo>((cb) => c.getModelInfo({}, { deadline: new Date(Date.now() + 10_000) }, cb))).policyVersion;
  } finally {
    c.close();
  }
}

test(
  "pushes reach two real rollout workers; one killed is skipped, restarted it catches up and gets the next push",
  { timeout: 240_000 },
  async () => {
    redis = await startLocalRedis();
    const modelDir = await writeRandomModelDir(join(tmp.path, "model"), "ci", 11, 64);
    learner = await startLearner({ modelDir, checkpointDir: join(tmp.path, "ckpt"), redisUrl: redis.url });
    const req = (step: number, version: number) => ({
      jobId: "job-push-rollout",
      step,
      samples: syntheticSamples({ groups: 2, perGroup: 4, responseLen: 12, policyVersion: version, jobId: "job-push-rollout", eosId: EOS, salt: step }),
      params: { lr: 1e-3, warmupSteps: 0 },
    });
    const [portA, portB] = [await freePort(), await freePort()];
    await startRollout("rollout-a", portA, modelDir, learner.address);
    const b = await startRollout("rollout-b", portB, modelDir, learner.address);
    // StartJob checks the model against both workers' ModelInfo and pushes its version 0 to them.
    const started = await startJob(learner.client, { jobId: "job-push-rollout", modelDir });
    assert.deepEqual(started.pushedTo, ["rollout-a", "rollout-b"]);
    for (const p of [portA, portB]) assert.deepEqual(await servedPolicy(p), { jobId: "job-push-rollout", version: 0 });

    const s1 = await trainStep(learner.client, req(1, 0));
    assert.equal(s1.policyVersion, 1);
    assert.deepEqual(s1.pushedTo, ["rollout-a", "rollout-b"], `${JSON.stringify(s1)}\n${learner.svc.output()}`);
    assert.deepEqual(s1.pushFailed, []);
    assert.equal(await servedVersion(portA), 1);
    assert.equal(await servedVersion(portB), 1);

    await b.stop("SIGKILL");
    const s2 = await trainStep(learner.client, req(2, 1));
    assert.equal(s2.policyVersion, 2);
    assert.deepEqual(s2.pushedTo, ["rollout-a"]);
    assert.deepEqual(s2.pushFailed, ["rollout-b"]);
    assert.equal(await servedVersion(portA), 2);

    await startRollout("rollout-b", portB, modelDir, learner.address);
    assert.equal(await servedVersion(portB), 2, "the restarted worker caught up at start-up");
    const s3 = await trainStep(learner.client, req(3, 2));
    assert.deepEqual(s3.pushedTo, ["rollout-a", "rollout-b"]);
    assert.deepEqual(s3.pushFailed, []);
    assert.equal(await servedVersion(portA), 3);
    assert.equal(await servedVersion(portB), 3);
  },
);
