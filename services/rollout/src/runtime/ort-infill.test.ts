// Infill on the rollout engine: real onnxruntime sessions in decode worker threads.
import { test } from "node:test";
import assert from "node:assert/strict";
import ort from "onnxruntime-node";
import { InvalidArgumentError, type HostTensor } from "@rlmesh/shared";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { OrtRolloutEngine } from "./ort-rollout-engine.js";
import { OrtDenoiser } from "./ort-denoiser.js";
import { randomContractModel } from "../testing/test-model.js";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { decodeInfillBatch } from "../decoding/infill-decoder.js";
import type { InfillRequestItem } from "./infill-requests.js";
import { ProtoRolloutEngine } from "../service/proto-rollout-engine.js";
import type { InfillRequest } from "../service/infill-proto.js";

// A random contract model (vocab 37: 0 MASK, 1 PAD, 2 EOS) that declares token 3 as <|expand|>.
const base = randomContractModel(undefined, 7, 4);
const manifest = { ...base.manifest, expand_id: 3 };
const next = randomContractModel(undefined, 8, 4);

function tensorsOf(bytes: Uint8Array): HostTensor[] {
  return [...readWeights(parseModel(bytes))].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32", shape: w.shape, data: w.data }));
}

const items: InfillRequestItem[] = [
  { itemId: "a", prefix: [5, 6, 7, 8], suffix: [9, 10], initialLength: 4, maxLength: 16, samples: 2, seed: 21 },
  { itemId: "b", prefix: [11], suffix: [12, 13, 14, 15, 16], initialLength: 8, maxLength: 12, samples: 1, seed: 22 },
  { itemId: "c", prefix: [17, 18, 19], suffix: [], initialLength: 2, maxLength: 20, samples: 2, seed: 23 },
];

async function engine(replicas: number, maxBatch: number) {
  return OrtRolloutEngine.create({ model: { modelBytes: base.bytes, manifest }, replicas, intraOpNumThreads: 1, maxBatch });
}

test("infill on decode workers equals the decoder on the same session in this thread, however it is batched", async () => {
  const two = await engine(2, 2);
  const one = await engine(1, 16);
  const session = await ort.InferenceSession.create(base.bytes);
  try {
    for (const variable of [true, false]) {
      const params = { temperature: 0.8, threshold: 1, trace: true };
      const a = await two.infillSamples(items, { variable, params });
      const b = await one.infillSamples(items, { variable, params });
      assert.equal(a.variable, variable);
      assert.deepEqual(
        a.samples.map((s) => `${s.itemId}/${s.sampleIndex}`),
        ["a/0", "a/1", "b/0", "c/0", "c/1"],
      );
      // Equal but for the log-probabilities, which a different batch shape rounds differently (float32).
      const strip = (s: (typeof a.samples)[number]) => ({ ...s, timings: null, logProb: 0 });
      assert.deepEqual(a.samples.map(strip), b.samples.map(strip));
      a.samples.forEach((s, i) => assert.ok(Math.abs(s.logProb - b.samples[i]!.logProb) < 1e-4, `logProb ${s.logProb} vs ${b.samples[i]!.logProb}`));
      const prepared = one.prepareInfill(items, { variable, params });
      // The canvas ends with EOS after the suffix (DreamOn's evaluation layout), unless asked not to.
      assert.deepEqual(prepared.items[0]!.input.suffix, [9, 10, 2]);
      assert.deepEqual(one.prepareInfill(items, { variable, params, suffixEos: false }).items[0]!.input.suffix, [9, 10]);
      const direct = await decodeInfillBatch(new OrtDenoiser(ort, session, manifest), prepared.items.map((p) => p.input), prepared.params);
      a.samples.forEach((s, i) => {
        assert.deepEqual(s.middleTokenIds, direct[i]!.middleIds);
        assert.equal(s.nfe, direct[i]!.nfe);
        assert.deepEqual(s.events, direct[i]!.events);
        assert.equal(s.commitSteps!.length, s.middleTokenIds.length);
        assert.equal(s.policyVersion, 0);
        const it = items.find((x) => x.itemId === s.itemId)!;
        assert.deepEqual(s.prefixTokenIds, it.prefix);
        assert.deepEqual(s.suffixTokenIds, it.suffix);
        assert.ok(s.middleTokenIds.length <= (variable ? it.maxLength! : it.initialLength!));
        assert.ok(s.middleTokenIds.every((t) => t > 3), "no MASK, PAD, EOS or expand in a middle");
      });
      // Samples of one item differ by seed.
      assert.notDeepEqual(a.samples[0]!.middleTokenIds, a.samples[1]!.middleTokenIds);
    }
  } finally {
    await two.close();
    await one.close();
    await session.release();
  }
});

test("infill samples report the version they were decoded with across a weight swap", async () => {
  const e = await engine(2, 2);
  try {
    const before = await e.infillSamples(items, { variable: true });
    assert.ok(before.samples.every((s) => s.policyVersion === 0));
    await e.swapWeights(1, tensorsOf(next.bytes), { jobId: "job-x" });
    const after = await e.infillSamples(items, { variable: true });
    assert.equal(after.policyVersion, 1);
    assert.equal(after.policyJobId, "job-x");
    assert.ok(after.samples.every((s) => s.policyVersion === 1 && s.policyJobId === "job-x"));
    assert.notDeepEqual(
      after.samples.map((s) => s.middleTokenIds),
      before.samples.map((s) => s.middleTokenIds),
      "other weights fill other middles",
    );
  } finally {
    await e.close();
  }
});

test("bad infill requests are rejected naming the field, as gRPC INVALID_ARGUMENT too", async () => {
  const e = await engine(1, 4);
  const plain = await OrtRolloutEngine.create({ model: { modelBytes: base.bytes, manifest: base.manifest }, replicas: 1, intraOpNumThreads: 1 });
  try {
    const field = (f: string) => (err: unknown) => err instanceof InvalidDecodeParamsError && err.field === f;
    await assert.rejects(e.infillSamples([]), field("items"));
    await assert.rejects(e.infillSamples([{ itemId: "x", prefix: [], suffix: [] }]), field("items[0].prefix"));
    await assert.rejects(e.infillSamples([items[0]!, { ...items[1]!, initialLength: 0 }]), field("items[1].initial_length"));
    await assert.rejects(e.infillSamples([{ ...items[0]!, initialLength: 8, maxLength: 4 }]), field("items[0].max_length"));
    await assert.rejects(e.infillSamples([{ ...items[0]!, maxLength: 45 }]), field("items[0].max_length"), "4 + 45 + 2 > max_seq_len 48");
    await assert.rejects(e.infillSamples([{ ...items[0]!, prefix: [0, 5] }]), field("items[0].prefix"), "MASK in the prefix");
    await assert.rejects(plain.infillSamples(items, { variable: true }), field("variable_length"));
    const fixed = await plain.infillSamples(items.slice(0, 1));
    assert.equal(fixed.variable, false, "an ordinary model infills a fixed length by default");
    assert.ok(fixed.samples.every((s) => s.middleTokenIds.length <= 4));

    // A model without a KV cache: the default (dual for fixed length) falls back to full
    // forwards; a cache the caller names is refused naming the field.
    const noCache = await OrtRolloutEngine.create({ model: { modelBytes: base.bytes, manifest: { ...base.manifest, cache_support: [] } }, replicas: 1, intraOpNumThreads: 1 });
    try {
      const full = await noCache.infillSamples(items.slice(0, 1));
      assert.deepEqual(
        full.samples.map((s) => s.middleTokenIds),
        (await plain.infillSamples(items.slice(0, 1), { params: { cache: "none" } })).samples.map((s) => s.middleTokenIds),
      );
      await assert.rejects(noCache.infillSamples(items.slice(0, 1), { params: { cache: "dual" } }), field("cache"));
    } finally {
      await noCache.close();
    }

    const proto = new ProtoRolloutEngine(plain);
    assert.equal(proto.modelInfo().infillVariableLength, false);
    assert.equal(new ProtoRolloutEngine(e).modelInfo().infillVariableLength, true);
    const req = {
      items: [{ id: "i", prefix: "", suffix: "", initialLength: 4 }],
      samplesPerItem: 1,
      variableLength: true,
      params: null,
      requestId: "",
      policyJobId: "",
    } as unknown as InfillRequest;
    assert.throws(
      () => proto.validateInfill(req),
      (err: unknown) => err instanceof InvalidArgumentError && /variable_length/.test(err.message),
    );
  } finally {
    await e.close();
    await plain.close();
  }
});
