// After each TrainStep the learner process pushes the new version to every rollout worker
// registered in Redis; a worker that is down is skipped (and reported), and when it comes back it
// catches up through GetWeights, then receives the next push like the others.
//
// The workers are weight sinks (services/learner/src/weight-sink.ts): real gRPC servers serving
// RolloutService.UpdateWeights over the real WeightAssembler and registered as kind "rollout";
// the full rollout worker (onnxruntime) is not needed to test the push path.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger, createRedis, startLocalRedis, weightsChecksum, type LocalRedis } from "@rlmesh/shared";
import { fetchWeights, startWeightSink, type WeightSink } from "@rlmesh/learner/testing/weight-sink";
import { writeRandomModelDir } from "@rlmesh/learner/testing/random-model-dir";
import { startJob, startLearner, syntheticSamples, tempDir, trainStep, type LearnerProcess } from "./learner-harness.js";
import { reflectServices } from "./helpers.js";
import { call, type CheckpointResponse, type LearnerStatus } from "@rlmesh/shared";
import { existsSync } from "node:fs";

const EOS = 2;
const logger = createLogger("learner-push-test", { level: "error" });
const tmp = await tempDir("rlmesh-learner-push-");
let redis: LocalRedis | undefined;
let learner: LearnerProcess | undefined;
const sinks: WeightSink[] = [];
const clients: { disconnect(): void }[] = [];
after(async () => {
  for (const s of sinks) await s.stop(true).catch(() => undefined);
  await learner?.stop("SIGKILL");
  for (const c of clients) c.disconnect();
  await redis?.stop();
  await tmp.remove();
});

async function metricValue(port: number, line: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = text.split("\n").find((l) => line.test(l));
  return m ? Number(m.split(" ").pop()) : NaN;
}

test(
  "weights reach both rollout workers; one down is skipped, catches up when back, then gets pushes again",
  { timeout: 180_000 },
  async () => {
    redis = await startLocalRedis();
    const r = createRedis(redis.url, { role: "client", logger });
    clients.push(r);
    const modelDir = await writeRandomModelDir(join(tmp.path, "model"), "ci", 5, 64);
    learner = await startLearner({ modelDir, checkpointDir: join(tmp.path, "ckpt"), redisUrl: redis.url });
    const req = (step: number, version: number) => ({
      jobId: "job-push",
      step,
      samples: syntheticSamples({ groups: 2, perGroup: 4, responseLen: 12, policyVersion: version, jobId: "job-push", eosId: EOS, salt: step }),
      params: { lr: 1e-3, warmupSteps: 0 },
    });

    // No worker yet: the model is checked against the learner's RLMESH_MODEL_DIR, nothing is pushed.
    const started = await startJob(learner.client, { jobId: "job-push", modelDir });
    assert.deepEqual([Number(started.policyVersion), started.pushedTo], [0, []]);
    const w1 = await startWeightSink({ id: "rollout-a", redis: r, learnerAddr: learner.address, logger });
    let w2 = await startWeightSink({ id: "rollout-b", redis: r, learnerAddr: learner.address, logger });
    sinks.push(w1, w2);
    assert.equal(w1.version(), 0, "a worker fetches the latest weights at start-up");
    assert.equal(w1.jobId(), "job-push");

    const s1 = await trainStep(learner.client, req(1, 0));
    assert.equal(s1.policyVersion, 1);
    assert.deepEqual(s1.pushedTo, ["rollout-a", "rollout-b"]);
    assert.deepEqual(s1.pushFailed, []);
    assert.ok(s1.pushBytes > 0 && s1.pushSeconds > 0);
    const v1 = await fetchWeights(learner.address);
    for (const w of [w1, w2]) {
      assert.equal(w.version(), 1);
      assert.equal(weightsChecksum(w.tensors()), weightsChecksum(v1.tensors), `${w.id} holds the learner's version 1`);
    }

    // rollout-b goes down (still registered, as a crashed worker is until its TTL runs out).
    const port2 = w2.port;
    await w2.stop();
    const s2 = await trainStep(learner.client, req(2, 1));
    assert.equal(s2.policyVersion, 2);
    assert.deepEqual(s2.pushedTo, ["rollout-a"]);
    assert.deepEqual(s2.pushFailed, ["rollout-b"]);
    assert.equal(w1.version(), 2);
    assert.equal(await metricValue(learner.metricsPort, /^rlmesh_weight_push_versions_behind\{.*worker="rollout-b"/), 1);

    // rollout-b comes back on the same address and catches up through GetWeights.
    w2 = await startWeightSink({ id: "rollout-b", port: port2, redis: r, learnerAddr: learner.address, logger });
    sinks.push(w2);
    assert.equal(w2.version(), 2);
    const s3 = await trainStep(learner.client, req(3, 2));
    assert.equal(s3.policyVersion, 3);
    assert.deepEqual(s3.pushedTo, ["rollout-a", "rollout-b"]);
    assert.deepEqual(s3.pushFailed, []);
    const v3 = await fetchWeights(learner.address);
    for (const w of [w1, w2]) assert.equal(weightsChecksum(w.tensors()), weightsChecksum(v3.tensors), `${w.id} holds version 3`);
    assert.equal(await metricValue(learner.metricsPort, /^rlmesh_weight_push_versions_behind\{.*worker="rollout-b"/), 0);
    assert.ok((await metricValue(learner.metricsPort, /^rlmesh_weight_push_bytes_total/)) >= (5 * s1.pushBytes) / 2);
    // By path: version 1 opened both kept data connections with a call; rollout-a took versions 2
    // and 3 on its own without one; the restarted rollout-b got version 3 with a call again.
    const paths = async (path: string) => metricValue(learner!.metricsPort, new RegExp(`^rlmesh_weight_push_worker_pushes_total\\{.*path="${path}"`));
    assert.deepEqual(
      [await paths("tcp_call"), await paths("direct"), await paths("chunks"), await paths("failed")],
      [3, 2, 0, 1],
      "pushes by path: tcp_call, direct, chunks, failed",
    );

    // The rest of the process's surface: status, on-demand checkpoint, health, reflection, /healthz.
    const c = learner.client;
    const st = await call<LearnerStatus>((cb) => c.getStatus({}, cb));
    assert.equal(st.policyVersion, 3);
    assert.equal(st.step, 3);
    assert.equal(st.modelName, "random-ci");
    const ck = await call<CheckpointResponse>((cb) => c.checkpoint({}, cb));
    assert.equal(ck.policyVersion, 3);
    assert.ok(existsSync(join(ck.path, "manifest.json")), ck.path);
    assert.ok((await reflectServices(learner.address)).includes("rlmesh.v1.LearnerService"));
    assert.equal(await (await fetch(`http://127.0.0.1:${learner.metricsPort}/healthz`)).text(), "ok\n");
    assert.equal(await metricValue(learner.metricsPort, /^rlmesh_learner_policy_version/), 3);
  },
);
