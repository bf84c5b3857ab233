import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError, type GenerateRequest, type HostTensor } from "@rlmesh/shared";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { OrtRolloutEngine, SupersededSwapError, type GenerateRequestItem } from "./ort-rollout-engine.js";
import { randomContractModel } from "../testing/test-model.js";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { WeightValidationError } from "./weight-validation.js";
import { ProtoRolloutEngine } from "../service/proto-rollout-engine.js";

const base = randomContractModel(undefined, 7);
const next = randomContractModel(undefined, 8);

function tensorsOf(bytes: Uint8Array): HostTensor[] {
  return [...readWeights(parseModel(bytes))].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32", shape: w.shape, data: w.data }));
}

const requests: GenerateRequestItem[] = [
  { promptId: "a", prompt: [5, 6, 7, 8], samples: 3, seed: 11 },
  { promptId: "b", prompt: [9, 10], samples: 2, seed: 12 },
  { promptId: "c", prompt: [13, 14, 15, 16, 17, 18], samples: 3, seed: 13 },
];
const params = { max_new_tokens: 24, block_length: 8, temperature: 1, threshold: 0.7, cache: "dual" as const };

async function engine(opts: Partial<Parameters<typeof OrtRolloutEngine.create>[0]> = {}) {
  return OrtRolloutEngine.create({
    model: { modelBytes: base.bytes, manifest: base.manifest },
    replicas: 2,
    intraOpNumThreads: 1,
    maxBatch: 4,
    ...opts,
  });
}

const key = (s: { promptId: string; sampleIndex: number }) => `${s.promptId}/${s.sampleIndex}`;

test("generate returns every sample with tokens, version, NFE and timings, independent of batching", async () => {
  const e = await engine();
  const one = await OrtRolloutEngine.create({
    model: { modelBytes: base.bytes, manifest: base.manifest },
    replicas: 1,
    intraOpNumThreads: 1,
    maxBatch: 1,
  });
  try {
    const res = await e.generateSamples(requests, params);
    assert.equal(res.samples.length, 8);
    assert.deepEqual(res.samples.map(key), ["a/0", "a/1", "a/2", "b/0", "b/1", "c/0", "c/1", "c/2"]);
    for (const s of res.samples) {
      assert.equal(s.policyVersion, 0);
      assert.ok(s.nfe >= 1 && s.tokenIds.length >= 1);
      assert.ok(s.timings.decodeSeconds > 0 && s.timings.queueSeconds >= 0);
    }
    // Samples of one prompt differ (own seeds), and the same request gives the same samples.
    assert.notDeepEqual(res.samples[0]!.tokenIds, res.samples[1]!.tokenIds);
    const again = await one.generateSamples(requests, params);
    assert.deepEqual(
      again.samples.map((s) => s.tokenIds),
      res.samples.map((s) => s.tokenIds),
    );
  } finally {
    await e.close();
    await one.close();
  }
});

test("bad parameters are rejected naming the field, also as gRPC INVALID_ARGUMENT", async () => {
  const e = await engine({ replicas: 1 });
  try {
    await assert.rejects(
      e.generateSamples(requests, { temperature: -1 }),
      (err: unknown) => err instanceof InvalidDecodeParamsError && err.field === "temperature",
    );
    await assert.rejects(e.generateSamples(requests, { max_new_tokens: 45 }), /exceeds max_seq_len 48/);
    const req: GenerateRequest = {
      prompts: [{ id: "p", text: "x" }],
      samplesPerPrompt: 1,
      params: { topP: 2 },
      requestId: "r",
      minPolicyVersion: 0,
      policyJobId: "",
    };
    assert.throws(
      () => new ProtoRolloutEngine(e).validate(req),
      (err: unknown) => err instanceof InvalidArgumentError && err.message === "top_p: must be in (0, 1]",
    );
    // No tokenizer in this test model: text prompts are refused clearly.
    assert.throws(
      () => new ProtoRolloutEngine(e).validate({ ...req, params: null }),
      (err: unknown) => err instanceof InvalidArgumentError && err.field === "prompts",
    );
  } finally {
    await e.close();
  }
});

test("bad weight updates are rejected and the old version keeps serving", async () => {
  const e = await engine({ replicas: 1 });
  try {
    const before = await e.generateSamples(requests, params);
    const good = tensorsOf(next.bytes);
    const renamed = good.map((t, i) => (i === 0 ? { ...t, name: "nope" } : t));
    await assert.rejects(
      e.swapWeights(1, renamed),
      (err: unknown) => err instanceof WeightValidationError && /unknown weight "nope"/.test(err.message),
    );
    const reshaped = good.map((t, i) => (i === 1 ? { ...t, shape: [...t.shape].reverse().concat([1]) } : t));
    await assert.rejects(e.swapWeights(1, reshaped), /has shape/);
    await assert.rejects(e.swapWeights(1, good.slice(1)), /missing weights/);
    const nan = good.map((t, i) =>
      i === 2 ? { ...t, data: Float32Array.from(t.data as Float32Array, (v, j) => (j === 3 ? Number.NaN : v)) } : t,
    );
    await assert.rejects(e.swapWeights(1, nan), /non-finite value at index 3/);
    await assert.rejects(new ProtoRolloutEngine(e).updateWeights({ jobId: "", version: 1 }, renamed), (err: unknown) => err instanceof InvalidArgumentError && err.field === "weights");
    await assert.rejects(e.swapWeights(0, good), /greater than the serving version 0/);
    assert.equal(e.policyVersion, 0);
    const after = await e.generateSamples(requests, params);
    assert.deepEqual(
      after.samples.map((s) => [s.tokenIds, s.policyVersion]),
      before.samples.map((s) => [s.tokenIds, s.policyVersion]),
    );
  } finally {
    await e.close();
  }
});

test("a weight swap under load: no request fails, each sample reports the version it was decoded with", async () => {
  const e = await engine();
  const refNext = await OrtRolloutEngine.create({
    model: { modelBytes: next.bytes, manifest: next.manifest },
    replicas: 1,
    intraOpNumThreads: 1,
  });
  try {
    const v0 = new Map((await e.generateSamples(requests, params)).samples.map((s) => [key(s), s.tokenIds]));
    const v1 = new Map((await refNext.generateSamples(requests, params)).samples.map((s) => [key(s), s.tokenIds]));
    const load = Array.from({ length: 6 }, () => e.generateSamples(requests, params));
    await new Promise((r) => setTimeout(r, 20));
    const swap = await e.swapWeights(1, tensorsOf(next.bytes));
    assert.equal(swap.version, 1);
    const results = await Promise.all([...load, e.generateSamples(requests, params)]);
    const versions = new Set<number>();
    for (const res of results) {
      for (const s of res.samples) {
        versions.add(s.policyVersion);
        const expected = (s.policyVersion === 0 ? v0 : v1).get(key(s));
        assert.deepEqual(s.tokenIds, expected, `${key(s)} matches version ${s.policyVersion}`);
      }
    }
    assert.ok(versions.has(1));
    assert.ok(
      results[results.length - 1]!.samples.every((s) => s.policyVersion === 1),
      "after the swap, new requests use the new version",
    );
    assert.equal(new ProtoRolloutEngine(e).modelInfo().policyVersion, 1);
  } finally {
    await e.close();
    await refNext.close();
  }
});

test("an AbortSignal cancels a decode in progress; the engine keeps serving", async () => {
  const e = await engine({ replicas: 1 });
  try {
    const ctl = new AbortController();
    // One token per step and no early end at EOS: hundreds of full forwards, far longer than 30 ms.
    const slow = e.generateSamples(
      [{ promptId: "x", prompt: [5, 6], samples: 64 }],
      { max_new_tokens: 44, steps: 44, cache: "none", eos_fill: false },
      { signal: ctl.signal, maxBatch: 1 },
    );
    const t0 = performance.now();
    setTimeout(() => ctl.abort(new Error("deadline exceeded")), 30);
    await assert.rejects(
      slow,
      (err: unknown) => err instanceof Error && err.name === "AbortError" && /deadline exceeded/.test(err.message),
    );
    assert.ok(performance.now() - t0 < 2000, "cancelled between steps, not after the whole decode");
    const ok = await e.generateSamples(requests, params);
    assert.equal(ok.samples.length, 8);
  } finally {
    await e.close();
  }
});

test("model info names the execution provider really used (cuda falls back to cpu here)", async () => {
  const e = await engine({ replicas: 1, executionProvider: "cuda", workerId: "w1" });
  try {
    const info = new ProtoRolloutEngine(e).modelInfo();
    assert.equal(info.executionProvider, "cpu");
    assert.equal(info.workerId, "w1");
    assert.equal(info.vocabSize, base.manifest.vocab_size);
    assert.deepEqual(info.cacheSupport, ["prefix", "dual"]);
    assert.ok((info.weights ?? []).length > 0);
  } finally {
    await e.close();
  }
});

test("a request without lookahead gets the model's recommendation past its trained response length; an explicit one is kept", async () => {
  const manifest = { ...base.manifest, decoding: { response_budget: 16, lookahead: 3 } };
  const e = await engine({ model: { modelBytes: base.bytes, manifest }, replicas: 1 });
  try {
    const texts = async (p: object) => (await e.generateSamples(requests, { ...params, temperature: 0, ...p })).samples.map((s) => s.tokenIds.join(","));
    const unset = await texts({});
    assert.deepEqual(unset, await texts({ lookahead: 3 }), "24 new tokens > 16: the manifest's lookahead 3");
    const whole = await texts({ lookahead: 0 });
    assert.notDeepEqual(unset, whole, "lookahead 0 (the whole canvas) decodes differently on this model");
    assert.deepEqual(await texts({ max_new_tokens: 16 }), await texts({ max_new_tokens: 16, lookahead: 0 }), "within 16 tokens: no lookahead");
  } finally {
    await e.close();
  }
});

test("versions are scoped by job: version 0 of a new job is taken, samples carry the job, a superseded catch-up is refused", async () => {
  const e = await engine({ replicas: 1 });
  try {
    const base = tensorsOf(next.bytes);
    assert.equal((await e.swapWeights(3, base, { jobId: "job-a" })).jobId, "job-a");
    await assert.rejects(e.swapWeights(3, base, { jobId: "job-a" }), /greater than the serving version 3 of the same job/);
    // A new job starts at version 0, below the served job's version 3.
    await e.swapWeights(0, base, { jobId: "job-b" });
    assert.deepEqual([e.policyJobId, e.policyVersion], ["job-b", 0]);
    const res = await e.generateSamples(requests, params);
    assert.ok(res.samples.every((s) => s.policyJobId === "job-b" && s.policyVersion === 0));
    assert.deepEqual([res.policyJobId, res.policyVersion], ["job-b", 0]);
    // A catch-up that started while job-a v3 was served must not undo the push of job-b v0.
    await assert.rejects(
      e.swapWeights(4, base, { jobId: "job-a", ifServing: { jobId: "job-a", version: 3 } }),
      (err: unknown) => err instanceof SupersededSwapError && /job job-b v0 is served now/.test((err).message),
    );
    const proto = new ProtoRolloutEngine(e);
    assert.equal(proto.modelInfo().policyJobId, "job-b");
    await assert.rejects(
      proto.updateWeights({ jobId: "job-a", version: 4 }, base, { jobId: "job-a", version: 3 }),
      (err: unknown) => (err as { code?: number }).code === 10,
    );
  } finally {
    await e.close();
  }
});
