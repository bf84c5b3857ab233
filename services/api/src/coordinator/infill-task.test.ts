// An infill job (spec.task "infill") through the coordinator against a real Redis, with the
// rollout pool, reward queue and learner faked at their seams: what goes out on each seam.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger, InvalidArgumentError, type TrainStepRequestIn, type TrainStepResponse } from "@rlmesh/shared";
import { loadManifest } from "@rlmesh/shared/model/index";
import { DEFAULT_MODEL_DIR, TOY_DATASET_DIR } from "@rlmesh/shared/repo-paths";
import type { InfillItem } from "@rlmesh/shared/gen/rlmesh/v1/InfillItem";
import { normalizeSpec } from "../job-spec.js";
import { JobStore } from "../job-store.js";
import { Coordinator } from "./coordinator.js";
import { runJobToEnd, runnerTestbed } from "./testing/runner-testbed.js";
import type { Candidate, LearnerClient, RewardScorer } from "./interfaces.js";
import type { RolloutPool } from "./rollout-pool.js";
import { loadJobRows, validateDatasets } from "./job-datasets.js";
import { asInfillRows, rolloutInfill } from "./infill-task.js";

const bed = runnerTestbed("infill-task-test");
const EOS = (await loadManifest(DEFAULT_MODEL_DIR)).eos_id;

const rows = [
  { task_id: "a", prompt: "Write f(x) returning x + 1.", tests: { kind: "assert", tests: ["assert f(1) == 2"] }, reference: "```python\ndef f(x):\n    return x + 1\n```" },
  { task_id: "b", prompt: "Print n + 2.", tests: { kind: "stdio", cases: [{ input: "1\n", output: "3\n" }] }, reference: "```python\nn = int(input())\nprint(n + 2)\n```" },
];

/** An Infill rollout whose sample k of an item fills the middle with "\n    return x + k" style text. */
function infillRollout(calls: { items: InfillItem[]; variableLength?: boolean; cache?: string; eosCut?: number; expandCut?: number; lengthSearch?: number }[]): RolloutPool {
  return {
    workers: async () => [{ id: "w0" }],
    waitForWorkers: async () => [{ id: "w0" }],
    generate: async () => {
      throw new Error("an infill job must not call Generate");
    },
    infill: async (items: InfillItem[], g: number, params: { cache?: string }, opts: { variableLength?: boolean; eosCut?: number; expandCut?: number; lengthSearch?: number }) => {
      calls.push({
        items,
        cache: params.cache,
        ...(opts.variableLength !== undefined ? { variableLength: opts.variableLength } : {}),
        eosCut: opts.eosCut,
        expandCut: opts.expandCut,
        lengthSearch: opts.lengthSearch,
      });
      return {
        samples: items.flatMap((it) =>
          Array.from({ length: g }, (_, k) => ({
            itemId: it.id,
            sampleIndex: k,
            middleText: `\n<middle ${it.id}.${k}>`,
            middleTokenIds: [100 + k, 101],
            length: 2,
            prefixTokenIds: [7, 8, Number(it.id)],
            suffixTokenIds: [9],
            policyVersion: 0,
            policyJobId: "",
            nfe: 2,
            commitSteps: [],
            events: [],
          })),
        ),
      };
    },
  } as unknown as RolloutPool;
}

test("an infill job: Infill with the rows' prefix/suffix and the spec's lengths, the whole program scored, TrainSamples prefix | middle | suffix EOS", async () => {
  const dataset = join(bed.dir, "infill.jsonl");
  writeFileSync(dataset, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const calls: { items: InfillItem[]; variableLength?: boolean; cache?: string; eosCut?: number; expandCut?: number; lengthSearch?: number }[] = [];
  const scored: Candidate[] = [];
  const trained: TrainStepRequestIn[] = [];
  const rewards: RewardScorer = {
    score: async (cands) => {
      scored.push(...cands);
      return cands.map((c) => ({ reward: c.sampleIndex % 2, status: "ok" }));
    },
    purge: async () => 0,
  };
  let version = 0;
  const learner: LearnerClient = {
    startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
    trainStep: async (req) => {
      trained.push(req);
      return { policyVersion: ++version, stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 } as unknown as TrainStepResponse;
    },
  };
  const store = new JobStore(bed.conn);
  const deps = { store, redis: bed.conn, rollout: infillRollout(calls), rewards, learner, logger: createLogger("api-test", { level: "error" }) };
  const spec = normalizeSpec({
    modelDir: DEFAULT_MODEL_DIR,
    dataset: { path: dataset },
    groupSize: 2,
    promptsPerStep: 2,
    steps: 2,
    task: "infill",
    infill: { initialLength: 4, maxLength: 32, variableLength: true, eosCut: 0.4, lengthSearch: 3 },
  });
  const { job: done } = await runJobToEnd(store, new Coordinator(deps), spec);
  assert.equal(done.state, "JOB_STATE_SUCCEEDED", done.error);
  assert.equal(calls.length, 2);
  // The Infill items are the rows' cut: prefix = prompt + code before, suffix = code after.
  const byPrefix = new Map(calls[0]!.items.map((it) => [it.prefix, it]));
  const a = [...byPrefix.values()].find((it) => it.prefix!.startsWith("Write f(x)"));
  assert.ok(a, JSON.stringify(calls[0]!.items));
  assert.equal(a.prefix, "Write f(x) returning x + 1.```python\ndef f(x):");
  assert.equal(a.suffix, "\n```");
  assert.equal(a.initialLength, 4);
  assert.equal(a.maxLength, 32);
  assert.equal(calls[0]!.variableLength, true);
  // The job's eos_cut goes with every call; its unset expand_cut is left to the model's default.
  assert.ok(calls.every((c) => c.eosCut === 0.4 && c.expandCut === undefined), JSON.stringify(calls.map((c) => [c.eosCut, c.expandCut])));
  // Training rollouts never search lengths, whatever the spec (its 3 is for evals) or the model's default: 0 is sent.
  assert.ok(calls.every((c) => c.lengthSearch === 0), JSON.stringify(calls.map((c) => c.lengthSearch)));
  // Evals use the spec's radius; a spec stored before the field existed (none) sends 0, never the model's default.
  const evalCalls: typeof calls = [];
  const call = { signal: new AbortController().signal, requestId: "r", policyJobId: "j" };
  const infillRows = asInfillRows(loadJobRows(spec.dataset, spec));
  await rolloutInfill(infillRows, 1, {}, spec, { ...deps, rollout: infillRollout(evalCalls) }, call, "eval");
  const old = { ...spec, infill: { ...spec.infill, lengthSearch: undefined } };
  await rolloutInfill(infillRows, 1, {}, old, { ...deps, rollout: infillRollout(evalCalls) }, call, "eval");
  await rolloutInfill(infillRows, 1, {}, spec, { ...deps, rollout: infillRollout(evalCalls) }, call, "train");
  assert.deepEqual(evalCalls.map((c) => c.lengthSearch), [3, 0, 0]);
  // The job's decoding cache (dual by default) is not sent with variable length, which refuses it.
  assert.ok(calls.every((c) => c.cache === "none"), JSON.stringify(calls.map((c) => c.cache)));
  // The sandbox scores the whole program: prefix code + generated middle + suffix, one fenced block.
  assert.equal(scored.length, 2 * 2 * 2);
  const fx = scored.find((c) => c.row.prompt.startsWith("Write f(x)") && c.sampleIndex === 1)!;
  assert.match(fx.response, /^```python\ndef f\(x\):\n<middle \d\.1>\n```$/);
  assert.deepEqual(fx.row.tests, rows[0]!.tests);
  // The learner gets prefix ids as the prompt, the middle as the response, the suffix + EOS after it.
  assert.equal(trained.length, 2);
  for (const s of trained[0]!.samples!) {
    assert.equal(s.promptTokenIds!.slice(0, 2).join(), "7,8");
    assert.deepEqual(s.responseTokenIds!.slice(1), [101]);
    assert.deepEqual(s.suffixTokenIds, [9, EOS]);
  }
});

test("infill datasets: a row without a usable reference is INVALID_ARGUMENT at submit naming the file's line and the row; the toy splits cut", async () => {
  const bad = join(bed.dir, "bad.jsonl");
  writeFileSync(bad, `${JSON.stringify(rows[0])}\n\n${JSON.stringify({ ...rows[1], task_id: "noref", reference: undefined })}\n`);
  const spec = (path: string) => normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path }, task: "infill", infill: { variableLength: false } });
  await assert.rejects(
    validateDatasets(spec(bad)),
    (e: unknown) => e instanceof InvalidArgumentError && /spec\.dataset\.path: .*bad\.jsonl:3: field "reference": row "noref" has no reference/.test(e.message),
  );
  // Variable length on a model without expand support is refused naming the field.
  await assert.rejects(
    validateDatasets(normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: join(TOY_DATASET_DIR, "train.jsonl") }, task: "infill" })),
    /spec\.infill\.variable_length: .* declares no expand_id/,
  );
  const heldout = loadJobRows(spec(join(TOY_DATASET_DIR, "test-instances.jsonl")).dataset, { task: "infill", seed: 1 });
  assert.equal(heldout.length, 200);
  assert.ok(heldout.every((r) => r.task_id.includes("#L")));
  await validateDatasets(spec(join(TOY_DATASET_DIR, "test-instances.jsonl")));
});

test("an infill job's Infill calls carry the job's decoding cache for fixed length only", async () => {
  const dataset = join(bed.dir, "infill-cache.jsonl");
  writeFileSync(dataset, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const learner: LearnerClient = {
    startJob: async (req) => ({ jobId: req.jobId ?? "", policyVersion: 0, resumed: false, modelName: "fake", initSource: "model_dir", pushedTo: ["w0"], pushFailed: [] }),
    trainStep: async (req) => ({ policyVersion: 1, stats: { numSamples: req.samples?.length ?? 0 }, pushSeconds: 0 }) as unknown as TrainStepResponse,
  };
  const rewards: RewardScorer = { score: async (cands) => cands.map((c) => ({ reward: c.sampleIndex % 2, status: "ok" })), purge: async () => 0 };
  const cases = [
    { infill: { variableLength: false }, decoding: {}, want: "dual" },
    { infill: { variableLength: false }, decoding: { cache: "prefix" }, want: "prefix" },
    { infill: { variableLength: true }, decoding: { cache: "dual" }, want: "none" },
  ] as const;
  for (const c of cases) {
    const calls: { items: InfillItem[]; cache?: string }[] = [];
    const store = new JobStore(bed.conn);
    const coord = new Coordinator({ store, redis: bed.conn, rollout: infillRollout(calls), rewards, learner, logger: createLogger("api-test", { level: "error" }) });
    const spec = normalizeSpec({ modelDir: DEFAULT_MODEL_DIR, dataset: { path: dataset }, groupSize: 2, promptsPerStep: 2, steps: 1, task: "infill", infill: c.infill, decoding: c.decoding });
    const { job: done } = await runJobToEnd(store, coord, spec);
    assert.equal(done.state, "JOB_STATE_SUCCEEDED", done.error);
    assert.ok(calls.length > 0 && calls.every((x) => x.cache === c.want), `${JSON.stringify(c)}: ${JSON.stringify(calls.map((x) => x.cache))}`);
  }
});
