// The learner's warm-up (issue 17): the batch shapes a recipe can produce, and, on real jax-js
// trainers over a random-weight model, that warming up changes neither the weights nor the Adam
// moments (bit for bit), that a TrainStep after it gives the same update as one without it, and
// that a background warm-up interleaves with TrainSteps and stops for another job's StartJob.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, InvalidArgumentError, type TrainSample, type TrainStepRequest } from "@rlmesh/shared";
import { loadModel, parseModel, readWeights } from "@rlmesh/shared/model/index";
import { Registry } from "prom-client";
import { GrpoTrainer } from "./grpo-trainer.js";
import { JobTrainers } from "./job-trainers.js";
import { servedShapeOfModel } from "./model-compat.js";
import {
  DEFAULT_WARMUP_MAX_HEAP_MIB,
  DEFAULT_WARMUP_RECIPE,
  checkTrainShape,
  explainHeapExhausted,
  heapBudgetRefusal,
  parseTokenRange,
  shapeKey,
  ShapeHeapLedger,
  warmupBatch,
  warmupShapes,
  WarmupConfigError,
  type WarmupRecipe,
} from "./warmup.js";
import { LearnerMetrics } from "../learner-metrics.js";
import type { NamedTensors } from "../optim/named-tensors.js";
import { warmupRecipe } from "../config.js";
import { writeRandomModelDir } from "../testing/random-model-dir.js";

const root = await mkdtemp(join(tmpdir(), "rlmesh-warmup-test-"));
after(() => rm(root, { recursive: true, force: true }));
const logger = createLogger("warmup-test", { level: "error" });

test("the shapes of the demo's recipe: every reachable bucket, from the middle of the range outwards, capped at max_seq_len", () => {
  // Toy prompts 19-45 tokens, responses up to 64: sequences of 20..109 tokens, centre 64.5.
  assert.deepEqual(
    warmupShapes(DEFAULT_WARMUP_RECIPE, 320).map((s) => `${s.rows}x${s.seqLen}`),
    ["32x64", "32x80", "32x48", "32x96", "32x32", "32x112"],
  );
  // max_seq_len 100 (not a multiple of 16): padBatchToBucket pads 97..100 to 100, never past it
  // (sequences of 20..100, centre 60).
  assert.deepEqual(
    warmupShapes({ ...DEFAULT_WARMUP_RECIPE, rows: 8 }, 100).map((s) => s.seqLen),
    [64, 48, 80, 32, 96, 100],
  );
  assert.deepEqual(
    warmupShapes({ rows: 4, promptTokens: [40, 40], responseTokens: 24, maxSeconds: 10 }, 320).map((s) => s.seqLen),
    [48, 64],
  );
  assert.equal(shapeKey(32, 80), "32x80");
  assert.equal(shapeKey(32, 80, true), "32x80+old");
});

test("warm-up settings: ranges parse, bad values name the setting", () => {
  assert.deepEqual(parseTokenRange("X", "19-45"), [19, 45]);
  assert.deepEqual(parseTokenRange("X", "30"), [30, 30]);
  assert.throws(() => parseTokenRange("RLMESH_LEARNER_WARMUP_PROMPT_TOKENS", "45-19"), /RLMESH_LEARNER_WARMUP_PROMPT_TOKENS must satisfy 1 <= MIN <= MAX/);
  assert.throws(() => parseTokenRange("RLMESH_LEARNER_WARMUP_PROMPT_TOKENS", "many"), WarmupConfigError);
  assert.throws(() => warmupShapes({ ...DEFAULT_WARMUP_RECIPE, rows: 0 }, 320), /warm-up rows must be an integer >= 1/);
  const cfg = { warmup: true, warmupRows: 16, warmupPromptTokens: "10-20", warmupResponseTokens: 32, warmupMaxSeconds: 5 };
  assert.deepEqual(warmupRecipe(cfg), { rows: 16, promptTokens: [10, 20], responseTokens: 32, maxSeconds: 5, maxHeapMiB: DEFAULT_WARMUP_MAX_HEAP_MIB });
  assert.equal(warmupRecipe({ ...cfg, warmupMaxHeapMb: 0 })?.maxHeapMiB, 0);
  assert.throws(() => warmupShapes({ ...DEFAULT_WARMUP_RECIPE, maxHeapMiB: 5000 }, 320), /warm-up maxHeapMiB must be in \[0, 4096\]/);
  assert.equal(warmupRecipe({ ...cfg, warmup: false }), undefined);
  assert.throws(() => warmupRecipe({ ...cfg, warmupPromptTokens: "x" }), /RLMESH_LEARNER_WARMUP_PROMPT_TOKENS must be a token count/);
});

test("heap ledger: a shape that ran costs nothing again; others are scaled from the measured ones; the budget refuses what would pass it", () => {
  const MiB = 2 ** 20;
  const l = new ShapeHeapLedger();
  assert.equal(l.estimate("m", { rows: 32, seqLen: 64 }), null, "nothing measured for this model yet");
  l.record("m", shapeKey(32, 64), 32, 64, 589 * MiB);
  l.record("m", shapeKey(32, 64), 32, 64, 5 * MiB); // a later run of the key does not replace its first
  l.record("other", shapeKey(32, 112), 32, 112, 4000 * MiB);
  assert.equal(l.estimate("m", { rows: 32, seqLen: 64 }), 0);
  // Measured growth of the shipped model's shapes (README, "Warm-up"): every estimate from the
  // 32 x 64 one is at or above it.
  const measured: [number, number, number][] = [[32, 32, 242], [32, 48, 411], [32, 80, 757], [32, 112, 1152], [16, 64, 273]];
  for (const [rows, seqLen, mib] of measured) {
    const e = l.estimate("m", { rows, seqLen })!;
    assert.ok(e >= mib * MiB, `${rows}x${seqLen}: estimate ${(e / MiB).toFixed(0)} MiB >= measured ${mib}`);
  }
  assert.equal(l.estimate("m", { rows: 32, seqLen: 128 }), 589 * 4 * MiB, "longer: squared in seqLen");
  assert.equal(l.estimate("m", { rows: 64, seqLen: 32 }), 589 * MiB, "more rows: linear");

  assert.equal(heapBudgetRefusal(589 * MiB, 0, 1024, 1), "", "a shape that ran costs nothing, whatever the heap");
  assert.equal(heapBudgetRefusal(2000 * MiB, 0, 1024, 1), "");
  assert.equal(heapBudgetRefusal(0, null, 1024, 0), "", "the first shape of a model: under the budget, it runs");
  assert.match(heapBudgetRefusal(1024 * MiB, null, 1024, 0), /wasm heap 1024 MiB >= the 1024 MiB warm-up budget/);
  assert.equal(heapBudgetRefusal(589 * MiB, 295 * MiB, 1024, 1), "");
  assert.match(heapBudgetRefusal(589 * MiB, 442 * MiB, 1024, 1), /wasm heap 589 MiB \+ ~442 MiB for this shape > the 1024 MiB warm-up budget/);
  assert.match(heapBudgetRefusal(0, 1, 0, 0), /budget/, "budget 0: only shapes that ran before");
  assert.equal(heapBudgetRefusal(null, null, 1024, 0), "", "heap not measured: the first shape runs");
  assert.match(heapBudgetRefusal(null, null, 1024, 1), /not measured: one shape at most/);

  // jax-js's error, when the heap is full anyway, says what holds it and what to do.
  assert.equal(l.describe(), "32x112 4000 MiB, 32x64 589 MiB");
  const full = new RangeError("Allocation exceeds the 4 GiB memory32 limit");
  const e = explainHeapExhausted(full, "16x32", 4090 * MiB, l) as Error;
  assert.match(e.message, /^Allocation exceeds the 4 GiB memory32 limit \(batch shape 16x32\): jax-js's wasm heap holds 4090 MiB and never shrinks/);
  assert.match(e.message, /\(32x112 4000 MiB, 32x64 589 MiB\); restart the learner/);
  assert.equal(e.cause, full);
  const other = new RangeError("Invalid array length");
  assert.equal(explainHeapExhausted(other, "16x32", 0, l), other, "other errors pass unchanged");
});

test("a dummy batch fills its shape with ordinary tokens, a prompt, the longest response that fits, advantages ±1", () => {
  const b = warmupBatch({ rows: 3, seqLen: 16 }, { ...DEFAULT_WARMUP_RECIPE, responseTokens: 10 }, { vocab_size: 20, mask_id: 0, pad_id: 1, eos_id: 2 });
  assert.equal(b.tokens.length, 48);
  assert.ok([...b.tokens].every((t) => t > 2 && t < 20));
  assert.ok([...b.attentionMask].every((x) => x === 1));
  assert.deepEqual([...b.responseMask.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(Array.from(b.advantages), [1, -1, 1]);
});

// ---------------------------------------------------------------- real trainers

const modelDir = await writeRandomModelDir(join(root, "model"), "ci", 3, 128);
const manifest = (await loadModel(modelDir)).manifest;
const { eos_id: EOS, mask_id: MASK, pad_id: PAD } = manifest;
const PROMPTS = 2;
const G = 4;
/** Shapes of this recipe: 8 rows × 64 and 8 rows × 48 (sequences of 41..64 tokens). */
const RECIPE: WarmupRecipe = { rows: PROMPTS * G, promptTokens: [40, 40], responseTokens: 24, maxSeconds: 600 };

/** PROMPTS × G samples of `promptLen` + `responseLen` tokens (the last response token EOS), rewards mixed. */
function request(jobId: string, step: number, version: number, promptLen: number, responseLen: number): TrainStepRequest {
  const id = (x: number) => {
    const v = 3 + (x % (manifest.vocab_size - 3));
    return v === MASK || v === PAD || v === EOS ? 3 : v;
  };
  const samples: TrainSample[] = [];
  for (let p = 0; p < PROMPTS; p++) {
    const prompt = Array.from({ length: promptLen }, (_, j) => id(p * 17 + j * 5 + step));
    for (let g = 0; g < G; g++) {
      const response = [...Array.from({ length: responseLen - 1 }, (_, j) => id(p * 29 + g * 11 + j * 3 + step)), EOS];
      samples.push({ promptId: `p${p}`, promptTokenIds: prompt, responseTokenIds: response, reward: (p + g) % 2, policyVersion: version, policyJobId: jobId, suffixTokenIds: [] });
    }
  }
  return { jobId, step, samples, params: { lr: 3e-3, warmupSteps: 0 }, seed: 11 };
}

function assertBitIdentical(a: NamedTensors, b: NamedTensors, what: string): void {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: tensor names`);
  for (const name of Object.keys(a)) {
    const x = new Uint32Array(a[name]!.data.buffer, a[name]!.data.byteOffset, a[name]!.data.length);
    const y = new Uint32Array(b[name]!.data.buffer, b[name]!.data.byteOffset, b[name]!.data.length);
    let differ = 0;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differ++;
    assert.equal(differ, 0, `${what}: ${name} differs in ${differ} of ${x.length} elements`);
  }
}

test("warm-up leaves weights and Adam moments bit-identical, and the next TrainStep's update equals one without warm-up", { timeout: 600_000 }, async () => {
  const registry = new Registry();
  const metrics = new LearnerMetrics(registry);
  const warmed = await GrpoTrainer.open({ modelDir, checkpointDir: join(root, "ckpt-warm"), logger, updatePath: "fast", metrics });
  const plain = await GrpoTrainer.open({ modelDir, checkpointDir: join(root, "ckpt-plain"), logger, updatePath: "fast" });
  try {
    // One step first (64-token bucket), so that the Adam moments are not zeros.
    const first = request("job", 1, 0, 40, 20);
    await warmed.trainStep(first);
    await plain.trainStep(first);
    // The trainer without warm-up takes its step in the 48 bucket first: it compiles that shape
    // inside the step (jax-js shares compiled programs within a process, so after the warm-up it
    // would not).
    const second = request("job", 2, 1, 40, 6);
    const p = await plain.trainStep(second);
    const before = warmed.trainingState();
    const published = warmed.weights();
    assert.equal(before.version, 1);
    assert.ok(Object.values(before.optimizer.m).some((t) => t.data.some((x) => x !== 0)), "the moments are not zeros");

    const report = await warmed.warmup(warmupShapes(RECIPE, manifest.max_seq_len), RECIPE);
    // The 64 bucket was compiled by the first step; 48 by the warm-up (of this trainer).
    assert.deepEqual(
      report.shapes.map((s) => `${s.rows}x${s.seqLen}:${s.outcome}`),
      ["8x48:compiled", "8x64:already"],
    );
    assert.ok(report.shapes[0]!.seconds > 0 && report.warmSeconds >= report.shapes[0]!.seconds);
    assert.equal((await registry.getSingleMetric("rlmesh_learner_warmup_seconds")!.get()).values[0]!.value, report.warmSeconds);

    const after = warmed.trainingState();
    assert.equal(after.version, before.version);
    assert.equal(after.optimizer.step, before.optimizer.step);
    assertBitIdentical(after.weights, before.weights, "weights after warm-up");
    assertBitIdentical(after.optimizer.m, before.optimizer.m, "Adam m after warm-up");
    assertBitIdentical(after.optimizer.v, before.optimizer.v, "Adam v after warm-up");
    assert.equal(warmed.weights(), published, "the published version is the same object");
    assert.equal(warmed.status().step, 1, "the warm-up is no learner step");

    // A step in the warmed bucket (40 + 6 tokens → 48): the same update as the trainer that
    // compiled it inside the step (before the warm-up ran).
    const w = await warmed.trainStep(second);
    assert.equal(w.policyVersion, 2);
    assert.equal(p.policyVersion, 2);
    assert.equal(w.stats.loss, p.stats.loss);
    assert.equal(w.stats.gradNorm, p.stats.gradNorm);
    const a = warmed.trainingState();
    const b = plain.trainingState();
    assert.equal(a.optimizer.step, b.optimizer.step);
    assertBitIdentical(a.weights, b.weights, "weights after the step (warmed vs not)");
    assertBitIdentical(a.optimizer.m, b.optimizer.m, "Adam m after the step (warmed vs not)");
    assertBitIdentical(a.optimizer.v, b.optimizer.v, "Adam v after the step (warmed vs not)");
    // A second warm-up call is the first one.
    assert.equal(await warmed.warmup([], RECIPE), report);
  } finally {
    warmed.dispose();
    plain.dispose();
  }
});

/** JobTrainers under root/`dir` over the test model (the one rollout worker serves it), warming up with RECIPE. */
async function openHost(dir: string): Promise<JobTrainers> {
  const m = await loadModel(modelDir);
  const served = servedShapeOfModel({ manifest: m.manifest, weights: [...readWeights(parseModel(m.modelBytes))].map(([name, w]) => ({ name, shape: [...w.shape] })) }, "w0");
  return JobTrainers.open({ root: join(root, dir), logger, trainer: { updatePath: "fast" }, servedModels: async () => [served], warmup: RECIPE });
}

test("JobTrainers: the warm-up runs in the background until the job's first TrainStep, which waits for the shape in progress only; another job's StartJob stops it", { timeout: 600_000 }, async () => {
  const host = await openHost("jobs");
  try {
    await host.startJob({ jobId: "job-a", modelDir });
    const a = host.trainerFor("job-a");
    assert.equal(a.warmupReport(), null, "StartJob itself does not warm up");
    host.warmUp("job-b"); // not the learner's job: nothing
    assert.equal(a.warmupReport(), null);
    host.warmUp("job-a");
    const running = a.warmupReport();
    assert.ok(running);
    // Issued while the warm-up's first shape (48, this step's own) compiles: the step waits for
    // it and uses it; the warm-up starts no further shape (64 compiles when a step needs it).
    await new Promise((r) => setImmediate(r)); // the warm-up's first shape has started
    const step = await a.trainStep(request("job-a", 1, 0, 40, 6));
    assert.equal(step.policyVersion, 1);
    const report = await running;
    assert.deepEqual(
      report.shapes.map((s) => `${s.seqLen}:${s.outcome}`),
      ["48:compiled", "64:skipped"],
    );
    host.warmUp("job-a"); // once per trainer
    assert.equal(a.warmupReport(), running);

    // Stopped before its first shape ran: nothing is compiled.
    await host.startJob({ jobId: "job-b", modelDir });
    const b = host.trainerFor("job-b");
    host.warmUp("job-b");
    const bRunning = b.warmupReport()!;
    await b.stopWarmup();
    assert.deepEqual((await bRunning).shapes.map((s) => s.outcome), ["skipped", "skipped"]);

    // Another job's StartJob while a warm-up runs: the warm-up ends (the shape in progress, if
    // any, finishes; no later one starts) before the old trainer is disposed, and the new job trains.
    await host.startJob({ jobId: "job-c", modelDir });
    host.warmUp("job-c");
    const cRunning = host.trainerFor("job-c").warmupReport()!;
    await host.startJob({ jobId: "job-d", modelDir });
    const cOutcomes = (await cRunning).shapes.map((s) => s.outcome);
    assert.equal(cOutcomes.length, 2);
    assert.ok(cOutcomes.indexOf("skipped") === -1 || cOutcomes.slice(cOutcomes.indexOf("skipped")).every((o) => o === "skipped"), cOutcomes.join(","));
    const d = await host.trainerFor("job-d").trainStep(request("job-d", 1, 0, 40, 20));
    assert.equal(d.policyVersion, 1);
    // A TrainStep that came before the warm-up's start (a retried step at a restarted learner):
    // no warm-up starts between the job's steps.
    host.warmUp("job-d");
    assert.equal(host.trainerFor("job-d").warmupReport(), null, "no warm-up once the job has trained");
  } finally {
    host.dispose();
  }
});

test("JobTrainers.close at shutdown waits for the warm-up's shape in progress before disposing the trainer", { timeout: 600_000 }, async () => {
  const host = await openHost("jobs-close");
  await host.startJob({ jobId: "job-e", modelDir });
  host.warmUp("job-e");
  const running = host.trainerFor("job-e").warmupReport()!;
  await new Promise((r) => setImmediate(r)); // the warm-up's first shape has started
  await host.close();
  // The shape in progress finished on live weights (not a disposed model), no later one started.
  const outcomes = (await running).shapes.map((s) => s.outcome);
  assert.equal(outcomes[0], "compiled", outcomes.join(","));
  assert.ok(outcomes.slice(1).every((o) => o === "skipped"), outcomes.join(","));
});

test("StartJob's train_shape: unset or rows 0 is none (the configured recipe); a bad one is INVALID_ARGUMENT naming the field", () => {
  assert.equal(checkTrainShape(undefined), null);
  assert.equal(checkTrainShape({ rows: 0, promptTokensMin: 5 }), null);
  assert.deepEqual(checkTrainShape({ rows: 16, promptTokensMin: 19, promptTokensMax: 45, responseTokens: 64 }), { rows: 16, promptTokens: [19, 45], responseTokens: 64 });
  const bad = (raw: Parameters<typeof checkTrainShape>[0], field: string, msg: RegExp) =>
    assert.throws(
      () => checkTrainShape(raw),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === field && msg.test(e.message),
    );
  bad({ rows: 8, promptTokensMin: 0, promptTokensMax: 4, responseTokens: 8 }, "train_shape.prompt_tokens_min", /must be >= 1 when train_shape is given, got 0/);
  bad({ rows: 8, promptTokensMin: 9, promptTokensMax: 4, responseTokens: 8 }, "train_shape.prompt_tokens_max", /must be >= prompt_tokens_min \(9\), got 4/);
  bad({ rows: 8, promptTokensMin: 1, promptTokensMax: 4 }, "train_shape.response_tokens", /got 0/);
  bad({ rows: 1e6, promptTokensMin: 1, promptTokensMax: 4, responseTokens: 8 }, "train_shape.rows", /at most 65536, got 1000000/);
});

test("JobTrainers: a StartJob's train_shape decides the warm-up's shapes (rows and lengths), within the configured bounds", { timeout: 600_000 }, async () => {
  const host = await openHost("jobs-shape");
  try {
    // The configured recipe: PROMPTS × G rows, 40-token prompts, 24-token responses.
    await host.startJob({ jobId: "job-f", modelDir });
    host.warmUp("job-f");
    const f = host.trainerFor("job-f");
    await f.stopWarmup();
    assert.deepEqual(
      (await f.warmupReport()!).shapes.map((s) => `${s.rows}x${s.seqLen}`),
      warmupShapes(RECIPE, manifest.max_seq_len).map((s) => `${s.rows}x${s.seqLen}`),
    );
    // The job's own: 2 rows, prompts of 10-12 tokens, responses up to 8 (sequences of 11..20 tokens: buckets 16 and 32).
    const trainShape = { rows: 2, promptTokens: [10, 12] as const, responseTokens: 8 };
    await host.startJob({ jobId: "job-g", modelDir, trainShape });
    host.warmUp("job-g");
    const g = host.trainerFor("job-g");
    const report = await g.warmupReport()!;
    const want = warmupShapes({ ...RECIPE, ...trainShape }, manifest.max_seq_len);
    assert.deepEqual(
      report.shapes.map((s) => `${s.rows}x${s.seqLen}:${s.outcome}`),
      want.map((s) => `2x${s.seqLen}:compiled`),
    );
    assert.notDeepEqual(
      want.map((s) => s.seqLen),
      warmupShapes(RECIPE, manifest.max_seq_len).map((s) => s.seqLen),
    );
  } finally {
    host.dispose();
  }
});

test("a TrainStep in a warmed shape compiles nothing; one in a shape the warm-up did not cover does", { timeout: 600_000 }, async () => {
  const { setDebug } = await import("@jax-js/jax");
  const compiles = { n: 0 };
  const info = console.info;
  console.info = (...args: unknown[]) => {
    if (String(args[0]).startsWith("=========== JIT Compile")) compiles.n++;
  };
  setDebug(1);
  const trainer = await GrpoTrainer.open({ modelDir, checkpointDir: join(root, "ckpt-count"), logger, updatePath: "fast" });
  try {
    // Shapes no other test of this process compiled: 8 × 32 (warmed) and 8 × 80 (not).
    const recipe: WarmupRecipe = { rows: PROMPTS * G, promptTokens: [20, 20], responseTokens: 10, maxSeconds: 600 };
    const shapes = warmupShapes(recipe, manifest.max_seq_len);
    assert.deepEqual(shapes.map((x) => x.seqLen), [32]);
    compiles.n = 0;
    await trainer.warmup(shapes, recipe);
    assert.ok(compiles.n > 0, "the warm-up compiled the 32 bucket");
    compiles.n = 0;
    await trainer.trainStep(request("job", 1, 0, 20, 8));
    assert.equal(compiles.n, 0, "the step in the warmed 32 bucket compiled nothing");
    await trainer.trainStep(request("job", 2, 1, 40, 36));
    assert.ok(compiles.n > 0, "the step in the 80 bucket compiled its shape");
  } finally {
    setDebug(0);
    console.info = info;
    trainer.dispose();
  }
});
