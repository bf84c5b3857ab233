// Rollout workers as real processes over gRPC on loopback: two workers generating concurrently,
// a weight swap under load (no request fails, every sample reports its version), a rejected bad
// update that leaves the old version serving, and INVALID_ARGUMENT naming a bad parameter.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  chunkWeights,
  createRedis,
  listWorkers,
  startLocalRedis,
  type GenerateResponse,
  type HostTensor,
  type LocalRedis,
  type ModelInfo,
  type RolloutServiceClient,
  type UpdateWeightsResponse,
} from "@rlmesh/shared";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { startRolloutWorker, type ServiceProcess } from "./helpers.js";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder");
const PROMPTS = ["Write a function f(x) that returns x plus 3.", "Write a program that reads an integer n and prints n times 2."];

function generate(c: RolloutServiceClient, params: object = {}, samples = 2): Promise<GenerateResponse> {
  return new Promise((resolve, reject) =>
    c.generate(
      {
        prompts: PROMPTS.map((text, i) => ({ id: String(i), text })),
        samplesPerPrompt: samples,
        params: { temperature: 1, maxNewTokens: 48, ...params },
      },
      { deadline: new Date(Date.now() + 60_000) },
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
}

function push(c: RolloutServiceClient, version: number, tensors: HostTensor[]): Promise<UpdateWeightsResponse> {
  return new Promise((resolve, reject) => {
    const stream = c.updateWeights({ deadline: new Date(Date.now() + 60_000) }, (err, res) => (err ? reject(err) : resolve(res!)));
    for (const ch of chunkWeights(version, tensors, 256 * 1024)) stream.write(ch);
    stream.end();
  });
}

const info = (c: RolloutServiceClient) =>
  new Promise<ModelInfo>((resolve, reject) => c.getModelInfo({}, (err, res) => (err ? reject(err) : resolve(res!))));

describe("rollout workers over gRPC", { timeout: 300_000 }, () => {
  let redis: LocalRedis;
  const workers: { svc: ServiceProcess; client: RolloutServiceClient; addr: string }[] = [];
  let weights: HostTensor[];

  before(async () => {
    redis = await startLocalRedis();
    const model = parseModel(readFileSync(join(MODEL_DIR, "model.onnx")));
    weights = [...readWeights(model)].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: w.shape, data: w.data }));
    for (let i = 0; i < 2; i++) {
      workers.push(await startRolloutWorker(redis.url, `w${i}`, MODEL_DIR));
    }
  });
  after(async () => {
    for (const w of workers) {
      w.client.close();
      await w.svc.stop();
    }
    await redis?.stop();
  });

  test("both workers register in Redis and generate concurrently", async () => {
    const r = createRedis(redis.url, { role: "client" });
    const deadline = Date.now() + 10_000;
    let live = await listWorkers(r, "rollout");
    while (live.length < 2 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 100));
      live = await listWorkers(r, "rollout");
    }
    r.disconnect();
    assert.deepEqual(live.map((w) => w.address).sort(), workers.map((w) => w.addr).sort());
    const [a, b] = await Promise.all(workers.map((w) => generate(w.client)));
    for (const res of [a!, b!]) {
      assert.equal(res.samples.length, PROMPTS.length * 2);
      for (const s of res.samples) {
        assert.equal(s.policyVersion, 0);
        assert.ok(s.nfe > 0, `nfe ${s.nfe}`);
        assert.ok(s.promptTokenIds.length > 0, "prompt tokens returned");
        assert.ok(s.tokenIds.length > 0 || s.text === "", "response tokens returned");
      }
    }
    assert.notEqual(a!.workerId, b!.workerId);
  });

  test("GetModelInfo names the model and the sha256 of its directory's weights (model.onnx), the same on both workers", async () => {
    const want = createHash("sha256").update(readFileSync(join(MODEL_DIR, "model.onnx"))).digest("hex");
    for (const w of workers) {
      const i = await info(w.client);
      assert.equal(i.modelName, "tiny-coder");
      assert.equal(i.modelFingerprint, want);
    }
  });

  test("a bad parameter is INVALID_ARGUMENT naming the field", async () => {
    await assert.rejects(generate(workers[0]!.client, { temperature: -1 }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /temperature/);
      return true;
    });
    await assert.rejects(
      generate(workers[0]!.client, {}, 0),
      (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && /samples_per_prompt/.test(err.details),
    );
    await assert.rejects(
      generate(workers[0]!.client, { lookahead: -2 }),
      (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && /^lookahead: must be >= 0/.test(err.details),
    );
  });

  test("a weight swap under load: no request fails and every sample reports a version it could have used", async () => {
    const w = workers[1]!;
    const results: GenerateResponse[] = [];
    let swapping = true;
    const load = (async () => {
      while (swapping) results.push(await generate(w.client));
    })();
    await new Promise((r) => setTimeout(r, 200));
    const res = await push(w.client, 1, weights);
    assert.equal(res.accepted, true, res.message);
    const after1 = await generate(w.client);
    swapping = false;
    await load;
    assert.ok(results.length >= 1);
    for (const r of results) for (const s of r.samples) assert.ok(s.policyVersion === 0 || s.policyVersion === 1);
    for (const s of after1.samples) assert.equal(s.policyVersion, 1, "requests after the swap use the new version");
    assert.equal((await info(w.client)).policyVersion, 1);
  });

  test("a bad update is rejected with a clear error and the old version keeps serving", async () => {
    const w = workers[0]!;
    const before = (await info(w.client)).policyVersion;
    const first = weights[0]!;
    const wrongShape = [{ ...first, shape: [first.data.length], data: first.data }, ...weights.slice(1)];
    await assert.rejects(push(w.client, before + 1, wrongShape), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, new RegExp(first.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      return true;
    });
    const unknown = [...weights, { name: "no.such.weight", dtype: "DTYPE_FLOAT32" as const, shape: [1], data: new Float32Array(1) }];
    await assert.rejects(
      push(w.client, before + 1, unknown),
      (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && /no\.such\.weight/.test(err.details),
    );
    assert.equal((await info(w.client)).policyVersion, before);
    const res = await generate(w.client);
    for (const s of res.samples) assert.equal(s.policyVersion, before);
  });
});
