// Infill metrics: a real engine (the shipped infilling model on onnxruntime in a decode worker) behind the proto adapter,
// its hook feeding RolloutMetrics, read back from the prom-client registry.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { OrtRolloutEngine } from "../runtime/ort-rollout-engine.js";
import type { InfillResult } from "../runtime/infill-requests.js";
import { join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { loadRolloutModel } from "../runtime/rollout-model.js";
import { ProtoRolloutEngine } from "./proto-rollout-engine.js";
import type { InfillRequest } from "./infill-proto.js";
import { RolloutMetrics } from "./rollout-metrics.js";

// The shipped infilling model (expand_id, a tokenizer: the proto request carries text).
const MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder-infill");

/** Value of a metric series (labels matched exactly; histograms: the _count / _sum series by suffix). */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}, suffix = ""): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric, `${name} is registered`);
  const want = JSON.stringify(labels);
  const series = (metric.values as { value: number; labels: Record<string, string | number>; metricName?: string }[]).filter(
    (v) => (suffix === "" || v.metricName === `${name}${suffix}`) && JSON.stringify(Object.fromEntries(Object.entries(v.labels).filter(([k]) => k !== "le"))) === want,
  );
  return series.reduce((a, v) => a + v.value, 0);
}

test("Infill calls are counted by mode: requests, samples, middle tokens, NFE, expands, deletes and latency, as the decodes report them", async () => {
  const runtime = await OrtRolloutEngine.create({ model: await loadRolloutModel(MODEL_DIR), replicas: 1, intraOpNumThreads: 1 });
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const seen: InfillResult[] = [];
  const engine = new ProtoRolloutEngine(runtime, {
    onInfill: (res, seconds) => {
      seen.push(res);
      metrics.observeInfill(res, seconds);
    },
  });
  try {
    const req = (variable: boolean, seed: number, lengthSearch?: number): InfillRequest => ({
      items: [
        { id: "a", prefix: "Write a program that reads an integer n and prints n + 1.```python\nn = int(input())", suffix: "\n```", initialLength: 2, maxLength: 16 },
        { id: "b", prefix: "Write a function f(x) that returns x times 3.```python\ndef f(x):", suffix: "\n```", initialLength: 12, maxLength: 16 },
      ],
      samplesPerItem: 3,
      variableLength: variable,
      params: { temperature: 1, threshold: 1, seed },
      ...(lengthSearch !== undefined ? { lengthSearch } : {}),
    }) as unknown as InfillRequest;
    const fixed = await engine.infill(req(false, 1));
    // Sampled variable decodes (temperature 1, expand/delete alone): until the calls have both
    // expanded and deleted; then one with the model's default length search.
    const variable = [];
    for (let seed = 1; seed <= 8; seed++) {
      variable.push(await engine.infill(req(true, seed, 0)));
      const all = seen.filter((r) => r.variable).flatMap((r) => r.samples);
      if (all.some((s) => s.expands > 0) && all.some((s) => s.deletes > 0)) break;
    }
    const v0 = seen.filter((r) => r.variable).flatMap((r) => r.samples);
    assert.ok(v0.some((s) => s.expands > 0) && v0.some((s) => s.deletes > 0), "the variable calls expanded and deleted");
    variable.push(await engine.infill(req(true, 1)));
    const v = seen.filter((r) => r.variable).flatMap((r) => r.samples);
    for (const s of seen.find((r) => !r.variable)!.samples) assert.deepEqual([s.expands, s.deletes], [0, 0]);

    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.equal(await value(registry, "rlmesh_rollout_infill_requests_total", { mode: "fixed" }), 1);
    assert.equal(await value(registry, "rlmesh_rollout_infill_requests_total", { mode: "variable" }), variable.length);
    assert.equal(await value(registry, "rlmesh_rollout_infill_samples_total", { mode: "fixed" }), fixed.samples!.length);
    assert.equal(await value(registry, "rlmesh_rollout_infill_samples_total", { mode: "variable" }), 6 * variable.length);
    // The counters agree with the proto responses the clients got.
    assert.equal(await value(registry, "rlmesh_rollout_infill_middle_tokens_total", { mode: "fixed" }), sum(fixed.samples!.map((s) => s.length!)));
    assert.equal(await value(registry, "rlmesh_rollout_infill_middle_tokens_total", { mode: "variable" }), sum(variable.flatMap((r) => r.samples!.map((s) => s.length!))));
    assert.equal(await value(registry, "rlmesh_rollout_infill_nfe_total", { mode: "variable" }), sum(variable.flatMap((r) => r.samples!.map((s) => s.nfe!))));
    assert.equal(await value(registry, "rlmesh_rollout_infill_nfe_total", { mode: "fixed" }), sum(fixed.samples!.map((s) => s.nfe!)));
    assert.equal(await value(registry, "rlmesh_rollout_infill_expands_total"), sum(v.map((s) => s.expands)));
    assert.equal(await value(registry, "rlmesh_rollout_infill_deletes_total"), sum(v.map((s) => s.deletes)));
    // The infilling model searches lengths by default: the candidates counted are the responses'.
    const candidates = sum(variable.flatMap((r) => r.samples!.map((s) => s.lengthCandidates ?? 0)));
    assert.ok(candidates > 0, "the variable calls searched lengths");
    assert.equal(await value(registry, "rlmesh_rollout_infill_length_candidates_total"), candidates);
    assert.equal(await value(registry, "rlmesh_rollout_infill_length_screened_out_total"), sum(variable.flatMap((r) => r.samples!.map((s) => s.lengthScreenedOut ?? 0))));
    assert.equal(await value(registry, "rlmesh_rollout_infill_duration_seconds", { mode: "variable" }, "_count"), variable.length);
    assert.ok((await value(registry, "rlmesh_rollout_infill_duration_seconds", { mode: "fixed" }, "_sum")) > 0);
    // Generate's series are untouched by Infill.
    assert.equal(await value(registry, "rlmesh_rollout_samples_total"), 0);
  } finally {
    await engine.close();
  }
});
