import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  createClient, createLogger, InvalidArgumentError, loadProto, SERVICE_NAMES, startGrpcServer, weightsChecksum,
  type FinalizeWeightsResponse, type HostTensor, type LearnerServiceClient, type ReportEvalResponse, type TrainStepRequest, type TrainStepRequestIn, type TrainStepResponse,
} from "@rlmesh/shared";
import { createLearnerService, type PushResult } from "./learner-service.js";
import { JobNotStartedError, type ReportEvalResult, type StartJobInput, type Trainer, type TrainerHost, type TrainStepResult } from "./trainer/trainer.js";
import { ModelMismatchError } from "./trainer/model-compat.js";
import type { PolicyRef } from "@rlmesh/shared/weights";
import { fetchWeights } from "./testing/weight-sink.js";

const logger = createLogger("learner-service-test", { level: "error" });

/** A trainer double: version += 1 unless the request's job is "skip"; "replay" replays. */
class FakeTrainer implements Trainer {
  version = 0;
  active = 0;
  maxActive = 0;
  trained = 0;
  tensors = (v: number): HostTensor[] => [{ name: "w", dtype: "DTYPE_FLOAT32", shape: [3], data: Float32Array.of(v, v, v) }];
  validate(req: TrainStepRequest): void {
    if (req.samples.length === 0) throw new InvalidArgumentError("samples", "is empty");
  }
  async trainStep(req: TrainStepRequest): Promise<TrainStepResult> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, 20));
    this.active--;
    if (req.jobId === "replay") return { policyVersion: this.version, stats: { replayed: true }, replayed: true };
    this.trained++;
    if (req.jobId !== "skip") this.version++;
    return { policyVersion: this.version, stats: { skipped: req.jobId === "skip" }, replayed: false };
  }
  /** Below 0.1 the fake guard rolls back (a new version). */
  async reportEval(obs: { passAt1: number }): Promise<ReportEvalResult> {
    if (obs.passAt1 >= 0.1) return { policyVersion: this.version, guardAction: "", guardReason: "" };
    this.version++;
    return { policyVersion: this.version, guardAction: "rollback", guardReason: "fake drop" };
  }
  status() {
    return { policyVersion: this.version, step: this.trained };
  }
  async checkpoint() {
    return { path: "/ckpt", step: this.trained, policyVersion: this.version };
  }
  weights() {
    return { version: this.version, tensors: this.tensors(this.version) };
  }
  finalized = false;
  /** Installs a (fake) average once: a new version; later calls answer already_final. */
  async finalizeWeights(checkOnly = false) {
    const about = { averaged: true, averagedUpdates: 3, emaDecay: 0.9 };
    if (this.finalized) return { policyVersion: this.version, alreadyFinal: true, ...about };
    if (!checkOnly) {
      this.finalized = true;
      this.version++;
    }
    return { policyVersion: this.version, alreadyFinal: false, ...about };
  }
}

const trainer = new FakeTrainer();

/** A host double: the fake trainer for every job but "not-started"; StartJob of model "other-arch" fails the model check. */
class FakeHost implements TrainerHost {
  jobId = "j";
  /** warmUp calls: the job, and how many pushes had been made when it came. */
  warmUps: { jobId: string; pushesBefore: number }[] = [];
  warmUp(jobId: string): void {
    this.warmUps.push({ jobId, pushesBefore: pushes.length });
  }
  current() {
    return { jobId: this.jobId, trainer };
  }
  trainerFor(jobId: string): Trainer {
    if (jobId === "not-started") throw new JobNotStartedError(`job_id: the learner trains job ${this.jobId}, not ${jobId}`);
    return trainer;
  }
  /** The last StartJob's train shape as the host got it. */
  trainShape: StartJobInput["trainShape"] = undefined;
  async startJob(input: StartJobInput) {
    this.trainShape = input.trainShape;
    if (input.modelDir === "other-arch") throw new ModelMismatchError("model_dir: other-arch (m2) is another architecture than rollout worker w1 serves");
    this.jobId = input.jobId;
    trainer.version = 0;
    return { jobId: input.jobId, policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir" };
  }
}
const jobs = new FakeHost();
const pushes: number[] = [];
const pushedPolicies: PolicyRef[] = [];
const push = async (policy: PolicyRef, tensors: HostTensor[]): Promise<PushResult> => {
  const { version } = policy;
  pushes.push(version);
  pushedPolicies.push({ jobId: policy.jobId, version });
  assert.equal((tensors[0]!.data as Float32Array)[0], version, "pushes the weights of that version");
  return { pushedTo: ["w1"], pushFailed: ["w2"], seconds: 0.5, bytes: 12 };
};
const server = await startGrpcServer({
  port: 0,
  logger,
  services: [{ name: SERVICE_NAMES.learner, definition: loadProto().proto.rlmesh.v1.LearnerService.service, implementation: createLearnerService({ jobs, logger, push }) }],
});
const client = createClient<LearnerServiceClient>(loadProto().proto.rlmesh.v1.LearnerService, server.address);
after(async () => {
  client.close();
  await server.shutdown(100);
});

const sample = { promptId: "p", promptTokenIds: [1], responseTokenIds: [2], reward: 1, policyVersion: 0, policyJobId: "j" };
const call = (req: TrainStepRequestIn) =>
  new Promise<TrainStepResponse>((resolve, reject) => client.trainStep(req, (err, res) => (err ? reject(err) : resolve(res!))));

test("an invalid TrainStep is INVALID_ARGUMENT naming the field, and nothing is trained", async () => {
  await assert.rejects(call({ jobId: "j", step: 1, samples: [] }), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, "samples: is empty");
    return true;
  });
  assert.equal(trainer.trained, 0);
});

test("a new version is pushed and the push outcome returned; a skipped step pushes nothing; a replay pushes again", async () => {
  const r1 = await call({ jobId: "j", step: 1, samples: [sample] });
  assert.equal(r1.policyVersion, 1);
  assert.deepEqual(r1.pushedTo, ["w1"]);
  assert.deepEqual(r1.pushFailed, ["w2"]);
  assert.equal(r1.pushSeconds, 0.5);
  assert.equal(r1.pushBytes, 12);
  const skipped = await call({ jobId: "skip", step: 2, samples: [sample] });
  assert.equal(skipped.stats?.skipped, true);
  assert.deepEqual(skipped.pushedTo, []);
  const replay = await call({ jobId: "replay", step: 1, samples: [sample] });
  assert.equal(replay.stats?.replayed, true);
  assert.deepEqual(pushes, [1, 1]);
});

test("concurrent TrainSteps run one at a time", async () => {
  trainer.maxActive = 0;
  const rs = await Promise.all([1, 2, 3].map((s) => call({ jobId: "c", step: s, samples: [sample] })));
  assert.equal(trainer.maxActive, 1);
  assert.deepEqual(rs.map((r) => r.policyVersion).sort(), [2, 3, 4]);
});

test("ReportEval passes the held-out pass@1 to the guard; a rollback's restored version is pushed, a healthy eval pushes nothing", async () => {
  const report = (passAt1: number) =>
    new Promise<ReportEvalResponse>((resolve, reject) =>
      client.reportEval({ jobId: "j", step: 3, passAt1, n: 50 }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  const pushed = pushes.length;
  const healthy = await report(0.5);
  assert.equal(healthy.guardAction, "");
  assert.deepEqual(healthy.pushedTo, []);
  assert.equal(pushes.length, pushed);
  const v = trainer.version;
  const bad = await report(0.01);
  assert.equal(bad.guardAction, "rollback");
  assert.equal(bad.guardReason, "fake drop");
  assert.equal(Number(bad.policyVersion), v + 1);
  assert.deepEqual(bad.pushedTo, ["w1"]);
  assert.deepEqual(pushes.slice(pushed), [v + 1]);
});

test("FinalizeWeights: check_only changes and pushes nothing; the call installs the average as a new version, pushed before the reply; a repeat is already_final", async () => {
  const finalize = (checkOnly: boolean) =>
    new Promise<FinalizeWeightsResponse>((resolve, reject) =>
      client.finalizeWeights({ jobId: "j", checkOnly }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  const pushed = pushes.length;
  const v = trainer.version;
  const check = await finalize(true);
  assert.deepEqual([Number(check.policyVersion), check.averaged, check.alreadyFinal, check.pushedTo], [v, true, false, []]);
  assert.equal(pushes.length, pushed);
  const done = await finalize(false);
  assert.deepEqual([Number(done.policyVersion), done.averaged, done.alreadyFinal, Number(done.averagedUpdates), done.emaDecay], [v + 1, true, false, 3, 0.9]);
  assert.deepEqual(done.pushedTo, ["w1"]);
  assert.deepEqual(pushes.slice(pushed), [v + 1]);
  const again = await finalize(false);
  assert.deepEqual([Number(again.policyVersion), again.alreadyFinal, again.pushedTo], [v + 1, true, []]);
  await assert.rejects(
    new Promise((resolve, reject) => client.finalizeWeights({ jobId: "not-started" }, (err, res) => (err ? reject(err) : resolve(res)))),
    (err: grpc.ServiceError) => err.code === grpc.status.FAILED_PRECONDITION,
  );
});

test("GetWeights streams the latest version with its checksum", async () => {
  const got = await fetchWeights(server.address);
  assert.equal(got.version, trainer.version);
  assert.equal(weightsChecksum(got.tensors), weightsChecksum(trainer.tensors(trainer.version)));
});

test("GetWeights for a version the learner does not have yet is FAILED_PRECONDITION", async () => {
  const err = await new Promise<grpc.ServiceError>((resolve) => {
    const s = client.getWeights({ minVersion: 999 });
    s.on("data", () => undefined);
    s.on("error", resolve);
  });
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.match(err.details, /min_version 999 is newer than the learner's version/);
});

test("StartJob makes the job the learner's at version 0 and pushes its weights, also when that version is not newer", async () => {
  const started = await new Promise<Record<string, unknown>>((resolve, reject) =>
    client.startJob({ jobId: "job-2", modelDir: "m" }, (err, res) => (err ? reject(err) : resolve(res as never))),
  );
  assert.equal(Number(started.policyVersion), 0);
  assert.deepEqual(started.pushedTo, ["w1"]);
  assert.deepEqual(pushedPolicies.at(-1), { jobId: "job-2", version: 0 });
  // The job's warm-up starts after the push (and after the reply).
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(jobs.warmUps.at(-1), { jobId: "job-2", pushesBefore: pushes.length });
  const status = await new Promise<Record<string, unknown>>((resolve, reject) => client.getStatus({}, (err, res) => (err ? reject(err) : resolve(res as never))));
  assert.equal(status.jobId, "job-2");
  const w = await fetchWeights(server.address);
  assert.equal(w.version, 0);
});

test("StartJob's train_shape reaches the job's host (for its warm-up); a bad one is INVALID_ARGUMENT naming the field and starts nothing", async () => {
  const start = (trainShape: Record<string, number>) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      client.startJob({ jobId: "job-2", modelDir: "m", trainShape }, (err, res) => (err ? reject(err) : resolve(res as never))),
    );
  await start({ rows: 16, promptTokensMin: 12, promptTokensMax: 30, responseTokens: 48 });
  assert.deepEqual(jobs.trainShape, { rows: 16, promptTokens: [12, 30], responseTokens: 48 });
  await start({});
  assert.equal(jobs.trainShape, null, "unset: the learner's configured recipe");
  const pushed = pushes.length;
  await assert.rejects(start({ rows: 16, promptTokensMin: 30, promptTokensMax: 12, responseTokens: 48 }), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /^train_shape\.prompt_tokens_max: must be >= prompt_tokens_min \(30\), got 12/);
    return true;
  });
  assert.equal(pushes.length, pushed, "nothing pushed");
});

test("a TrainStep of a job the learner does not run is FAILED_PRECONDITION naming job_id; a model of another architecture is FAILED_PRECONDITION naming model_dir", async () => {
  await assert.rejects(call({ jobId: "not-started", step: 1, samples: [sample] }), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.match(err.details, /^job_id: the learner trains job job-2, not not-started/);
    return true;
  });
  const pushed = pushes.length;
  const err = await new Promise<grpc.ServiceError>((resolve) => client.startJob({ jobId: "job-3", modelDir: "other-arch" }, (e) => resolve(e!)));
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.match(err.details, /^model_dir: other-arch \(m2\) is another architecture/);
  assert.equal(pushes.length, pushed, "nothing pushed");
  assert.equal(jobs.jobId, "job-2");
  await new Promise((r) => setImmediate(r));
  assert.notEqual(jobs.warmUps.at(-1)?.jobId, "job-3", "a refused StartJob warms nothing up");
});
