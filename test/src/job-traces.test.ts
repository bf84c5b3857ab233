// Decode traces of a job end to end with real parts: a real rollout worker process (tiny-coder on
// onnxruntime) over gRPC on loopback, the real coordinator and JobService (gRPC on loopback),
// real Redis. The reward queue and the learner are faked at their seams (the fake learner pushes
// the model's weights to the worker as the job's version 0, as the real one does at StartJob).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import {
  chunkWeights,
  createClient,
  createLogger,
  createRedis,
  freePort,
  loadProto,
  startGrpcServer,
  startLocalRedis,
  SERVICE_NAMES,
  type GrpcServerHandle,
  type HostTensor,
  type Job,
  type JobServiceClient,
  type LocalRedis,
  type RolloutServiceClient,
  type TrainStepResponse,
  type UpdateWeightsResponse,
} from "@rlmesh/shared";
import type { Redis } from "ioredis";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { orderCorrelation } from "@rlmesh/shared/trace/index";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { ApiMetrics } from "@rlmesh/api/api-metrics";
import { createJobService } from "@rlmesh/api/job-service";
import { JobStore, MAX_TRACES_KEPT } from "@rlmesh/api/job-store";
import { Coordinator } from "@rlmesh/api/coordinator/coordinator";
import { RolloutPool } from "@rlmesh/api/coordinator/rollout-pool";
import type { LearnerClient, RewardScorer } from "@rlmesh/api/coordinator/interfaces";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { startService, waitServing, type ServiceProcess } from "./helpers.js";

const MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder");
const TRACES_PER_STEP = 3;
const STEPS = 3;
const CLI = join(REPO_ROOT, "services", "cli", "dist", "main.js");

/** The CLI as a child process, without blocking this process (it serves the api the CLI calls). */
function rlmesh(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

function push(c: RolloutServiceClient, jobId: string, version: number, tensors: HostTensor[]): Promise<UpdateWeightsResponse> {
  return new Promise((resolve, reject) => {
    const stream = c.updateWeights({ deadline: new Date(Date.now() + 60_000) }, (err, res) => (err ? reject(err) : resolve(res!)));
    for (const ch of chunkWeights({ jobId, version }, tensors, 256 * 1024)) stream.write(ch);
    stream.end();
  });
}

describe("job decode traces: rollout worker → coordinator → Redis → GetJobTraces", { timeout: 240_000 }, () => {
  let redis: LocalRedis;
  let conn: Redis;
  let worker: ServiceProcess;
  let workerClient: RolloutServiceClient;
  let server: GrpcServerHandle;
  let client: JobServiceClient;
  let apiAddr: string;
  let coordinator: Coordinator;
  let pool: RolloutPool;
  const registry = new Registry();
  const metrics = new ApiMetrics(registry);
  /** What the fake scorer gave each (task, response). */
  const given = new Map<string, number>();
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-traces-test-"));
  const dataset = join(dir, "tasks.jsonl");
  writeFileSync(
    dataset,
    [1, 2, 3]
      .map((k) => JSON.stringify({ task_id: `t${k}`, prompt: `Write a function f(x) that returns x plus ${k}.`, tests: { kind: "assert", tests: [`assert f(1) == ${1 + k}`] } }))
      .join("\n") + "\n",
  );

  before(async () => {
    redis = await startLocalRedis();
    conn = createRedis(redis.url, { role: "client" });
    const port = await freePort();
    worker = startService("rollout", {
      REDIS_URL: redis.url,
      RLMESH_ROLLOUT_PORT: String(port),
      RLMESH_ROLLOUT_METRICS_PORT: "0",
      RLMESH_WORKER_ID: "w0",
      RLMESH_MODEL_DIR: MODEL_DIR,
      RLMESH_ORT_THREADS: "1",
      RLMESH_LEARNER_ADDR: `127.0.0.1:${await freePort()}`,
    });
    const workerAddr = `127.0.0.1:${port}`;
    await waitServing(workerAddr, 60_000, worker);
    workerClient = createClient(loadProto().proto.rlmesh.v1.RolloutService, workerAddr);
    const weights = [...readWeights(parseModel(readFileSync(join(MODEL_DIR, "model.onnx"))))].map(([name, w]) => ({
      name,
      dtype: "DTYPE_FLOAT32" as const,
      shape: w.shape,
      data: w.data,
    }));
    const logger = createLogger("api-test", { level: "error" });
    const store = new JobStore(conn);
    pool = new RolloutPool(conn, logger);
    const rewards: RewardScorer = {
      // A reward that depends on the response, remembered to check the kept traces against.
      score: async (cands) =>
        cands.map((c) => {
          const reward = c.response.length % 3 === 0 ? 1 : c.response.length % 3 === 1 ? 0.5 : 0;
          given.set(`${c.row.task_id}|${c.response}`, reward);
          return { reward, status: "ok" };
        }),
      purge: async () => 0,
    };
    let version = 0;
    const learner: LearnerClient = {
      startJob: async (req) => {
        const pushed = await push(workerClient, req.jobId ?? "", 0, weights);
        assert.ok(pushed.accepted, pushed.message);
        return { jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "tiny-coder", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] };
      },
      trainStep: async (req) => ({ policyVersion: ++version, stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 }) as unknown as TrainStepResponse,
      reportEval: async () => ({ policyVersion: version, guardAction: "", guardReason: "", pushedTo: [], pushFailed: [] }) as never,
    };
    coordinator = new Coordinator({ store, redis: conn, rollout: pool, rewards, learner, logger, metrics });
    const apiPort = await freePort();
    server = await startGrpcServer({
      host: "127.0.0.1",
      port: apiPort,
      logger,
      services: [
        {
          name: SERVICE_NAMES.job,
          definition: loadProto().proto.rlmesh.v1.JobService.service,
          implementation: createJobService({ store, redis: conn, logger, onSubmitted: (job) => coordinator.start(job) }),
        },
      ],
    });
    apiAddr = `127.0.0.1:${apiPort}`;
    client = jobClient(apiAddr);
  });

  after(async () => {
    client?.close();
    await coordinator?.stop();
    pool?.close();
    workerClient?.close();
    await server?.shutdown(1000);
    await worker?.stop("SIGKILL");
    await conn?.quit();
    await redis?.stop();
  });

  async function runToEnd(spec: object): Promise<Job> {
    const job = await jobs.submit(client, spec);
    for (let i = 0; i < 1200; i++) {
      const j = await jobs.get(client, job.id);
      if (j.state === "JOB_STATE_SUCCEEDED") return j;
      if (j.state === "JOB_STATE_FAILED" || j.state === "JOB_STATE_CANCELLED") throw new Error(`job ${j.state}: ${j.error}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("job did not finish");
  }

  const base = {
    modelDir: MODEL_DIR,
    dataset: { path: dataset },
    groupSize: 2,
    promptsPerStep: 2,
    decoding: { temperature: 1, topP: 0.95, maxNewTokens: 48, blockLength: 16, threshold: 0.9, cache: "dual" },
  };

  test("a traced job keeps trace_samples_per_step samples per step with rewards, token texts and order correlation", async () => {
    const job = await runToEnd({ ...base, steps: STEPS, traceSamplesPerStep: TRACES_PER_STEP });
    const { samples } = await jobs.traces(client, job.id);
    // 2 prompts x 2 samples = 4 scored per step, 3 kept per step.
    assert.equal(samples.length, TRACES_PER_STEP * STEPS);
    assert.deepEqual(
      samples.map((s) => Number(s.step)),
      [1, 1, 1, 2, 2, 2, 3, 3, 3],
      "oldest step first",
    );
    const tok = await loadTokenizer(join(MODEL_DIR, "tokenizer.json"));
    for (const s of samples) {
      const n = s.tokenIds.length;
      assert.ok(n > 0);
      assert.equal(s.tokenTexts.length, n, "one text per token");
      assert.equal(s.commitSteps.length, n, "one commit step per token");
      for (const c of s.commitSteps) assert.ok(Number.isInteger(c) && c >= 1 && c <= s.nfe, `commit step ${c} in [1, nfe ${s.nfe}]`);
      assert.ok(Math.abs(s.orderCorrelation - orderCorrelation(s.commitSteps)) < 1e-12);
      assert.equal(s.tokenTexts.join(""), tok.decode(s.tokenIds, { skipSpecial: false }), "token texts are the tokenizer's");
      assert.match(s.promptId, /^t[123]$/);
      assert.match(s.promptText, /^Write a function f\(x\) that returns x plus [123]\.$/);
      // The reward kept is the one the scorer gave this very response.
      const body = s.tokenIds.at(-1) === 2 ? s.tokenIds.slice(0, -1) : s.tokenIds;
      const key = `${s.promptId}|${tok.decode(body, { skipSpecial: true })}`;
      assert.ok(given.has(key), `the scorer saw ${key}`);
      assert.equal(s.reward, given.get(key));
      assert.equal(Number(s.policyVersion), 0);
    }
    // rlmesh trace --job renders them: one section per kept sample, each correlation printed.
    const out = join(dir, `${job.id}.html`);
    const cli = await rlmesh(["trace", "--job", job.id, "--api", apiAddr, "--out", out]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.equal((readFileSync(out, "utf8").match(/<section class="sample"/g) ?? []).length, samples.length);
    for (const s of samples) assert.ok(cli.stdout.includes(`${s.promptId} @${Number(s.step)}`) && cli.stdout.includes(s.orderCorrelation.toFixed(3)), cli.stdout);
    // Filters: from_step and limit.
    const late = await jobs.traces(client, job.id, 3);
    assert.deepEqual(late.samples, samples.slice(6));
    const two = await jobs.traces(client, job.id, 2, 2);
    assert.deepEqual(two.samples, samples.slice(3, 5));
    // Stored with the job, bounded and expiring.
    const key = `rlmesh:job:${job.id}:traces`;
    assert.equal(await conn.llen(key), samples.length);
    const ttl = await conn.ttl(key);
    assert.ok(ttl > 0, `traces expire (ttl ${ttl})`);
    // The summary numbers reach the metrics.
    const text = await registry.metrics();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    assert.equal(value("rlmesh_trace_order_correlation_count"), samples.length);
    const expected = samples.reduce((a, s) => a + s.nfe / s.tokenIds.length, 0);
    assert.ok(Math.abs(value("rlmesh_trace_nfe_per_token_sum") - expected) < 1e-9, text);
  });

  test("an untraced job keeps nothing; bad requests name the field; an unknown job is NOT_FOUND", async () => {
    const job = await runToEnd({ ...base, steps: 1 });
    assert.deepEqual((await jobs.traces(client, job.id)).samples, []);
    assert.equal(await conn.exists(`rlmesh:job:${job.id}:traces`), 0);
    const fails = async (p: Promise<unknown>, code: grpc.status, re: RegExp) =>
      assert.rejects(p, (err: grpc.ServiceError) => {
        assert.equal(err.code, code, err.details);
        assert.match(err.details, re);
        return true;
      });
    await fails(jobs.traces(client, "job-nope"), grpc.status.NOT_FOUND, /job job-nope not found/);
    await fails(jobs.traces(client, job.id, -1), grpc.status.INVALID_ARGUMENT, /^from_step: must be an integer >= 0/);
    await fails(jobs.traces(client, job.id, 0, MAX_TRACES_KEPT + 1), grpc.status.INVALID_ARGUMENT, /^limit: /);
    await fails(jobs.traces(client, job.id, 0, -3), grpc.status.INVALID_ARGUMENT, /^limit: /);
    await fails(jobs.traces(client, "bad id!"), grpc.status.INVALID_ARGUMENT, /^id: /);
    // The CLI says why there is nothing to render.
    const cli = await rlmesh(["trace", "--job", job.id, "--api", apiAddr, "--out", join(dir, "none.html")]);
    assert.equal(cli.status, 1);
    assert.match(cli.stderr, /kept no traces: submit it with "trace_samples_per_step"/);
  });

  test("the kept traces are bounded (the newest stay) and kept once per step", async () => {
    const store = new JobStore(conn);
    const job = await store.create((await jobs.get(client, (await jobs.list(client)).jobs[0]!.id)).spec as never);
    const rec = (step: number) => ({ step, promptId: "t", promptText: "", tokenIds: [3], tokenTexts: ["x"], commitSteps: [1], reward: 0, policyVersion: 0, orderCorrelation: 0, nfe: 1 });
    for (let step = 1; step <= 5; step++) await store.appendTraces(job.id, [rec(step), rec(step)], 4);
    assert.deepEqual((await store.readTraces(job.id)).map((s) => s.step), [4, 4, 5, 5]);
    // A retried step keeps its traces once.
    await store.appendTraces(job.id, [rec(5)], 4);
    assert.deepEqual((await store.readTraces(job.id)).map((s) => s.step), [4, 4, 5, 5]);
  });
});
