// RolloutService.Infill over gRPC on loopback: two rollout worker processes (one on the shipped
// base, one on a model that declares an expand token), infills on both, a weight swap
// (UpdateWeights) in between with the version every sample reports, ModelInfo's
// infill_variable_length, and INVALID_ARGUMENT naming the field for bad input.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  chunkWeights,
  startLocalRedis,
  type HostTensor,
  type LocalRedis,
  type ModelInfo,
  type RolloutServiceClient,
  type UpdateWeightsResponse,
} from "@rlmesh/shared";
import type { InfillResponse__Output as InfillResponse } from "@rlmesh/shared/gen/rlmesh/v1/InfillResponse";
import type { InfillItem } from "@rlmesh/shared/gen/rlmesh/v1/InfillItem";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";
import { loadInfillRows } from "@rlmesh/shared/infill/index";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { startRolloutWorker, type ServiceProcess } from "./helpers.js";

const BASE_DIR = join(REPO_ROOT, "models", "tiny-coder");
const INFILL_DIR = join(REPO_ROOT, "models", "tiny-coder-infill");
const ROWS = loadInfillRows(join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl"), "heldout").slice(0, 3);

function infill(c: RolloutServiceClient, req: object): Promise<InfillResponse> {
  return new Promise((resolve, reject) =>
    c.infill(req, { deadline: new Date(Date.now() + 60_000) }, (err, res) => (err ? reject(err) : resolve(res!))),
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

function weightsOf(dir: string): HostTensor[] {
  const model = parseModel(readFileSync(join(dir, "model.onnx")));
  return [...readWeights(model)].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32" as const, shape: w.shape, data: w.data }));
}

const items = (extra: Partial<InfillItem> = {}): InfillItem[] =>
  ROWS.map((r) => ({ id: r.task_id, prefix: r.prefix, suffix: r.suffix, initialLength: 8, ...extra }));

describe("RolloutService.Infill over gRPC", { timeout: 300_000 }, () => {
  let redis: LocalRedis;
  let tmp: string;
  const workers: { svc: ServiceProcess; client: RolloutServiceClient; dir: string }[] = [];

  before(async () => {
    redis = await startLocalRedis();
    tmp = mkdtempSync(join(tmpdir(), "rlmesh-infill-grpc-"));
    // The variable-length worker serves the infilling model when it is in the repository; without
    // it, a copy of the base whose manifest declares the unused <|bos|> token as <|expand|>.
    let variableDir = INFILL_DIR;
    if (!existsSync(join(INFILL_DIR, "manifest.json"))) {
      variableDir = join(tmp, "bos-as-expand");
      cpSync(BASE_DIR, variableDir, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(variableDir, "manifest.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(join(variableDir, "manifest.json"), JSON.stringify({ ...manifest, expand_id: 3 }));
    }
    for (const [i, dir] of [BASE_DIR, variableDir].entries()) {
      const { svc, client } = await startRolloutWorker(redis.url, `infill-w${i}`, dir);
      workers.push({ svc, dir, client });
    }
  });
  after(async () => {
    for (const w of workers) {
      w.client.close();
      await w.svc.stop();
    }
    await redis?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("both workers infill; a weight swap in between; every sample reports its version", async () => {
    const [fixedW, varW] = workers as [(typeof workers)[number], (typeof workers)[number]];
    assert.equal((await info(fixedW.client)).infillVariableLength, false);
    assert.equal((await info(varW.client)).infillVariableLength, true);

    const run = () =>
      Promise.all([
        infill(fixedW.client, { items: items(), samplesPerItem: 2, params: { temperature: 0.7, seed: 3, trace: true } }),
        // DreamOn's expand/delete alone (no length search), so the edits account for every length.
        infill(varW.client, { items: items({ initialLength: 4, maxLength: 24 }), samplesPerItem: 2, lengthSearch: 0, params: { temperature: 0.7, seed: 3, trace: true } }),
      ]);
    const [fixed0, var0] = await run();
    for (const [res, variable] of [
      [fixed0, false],
      [var0, true],
    ] as const) {
      assert.equal(res.samples.length, ROWS.length * 2);
      assert.equal(Number(res.policyVersion), 0);
      for (const s of res.samples) {
        assert.equal(Number(s.policyVersion), 0);
        assert.ok(s.nfe > 0);
        assert.equal(s.length, s.middleTokenIds.length);
        assert.equal(s.commitSteps.length, s.length, "a commit step per middle token");
        assert.ok(s.prefixTokenIds.length > 0 && s.suffixTokenIds.length > 0);
        if (variable) assert.ok(s.length <= 24);
        else {
          assert.ok(s.length <= 8, "fixed length: at most initial_length tokens (EOS dropped)");
          assert.ok(s.events.every((e) => e.kind === "eos_fill"), "no expand or delete in fixed length");
        }
        for (const e of s.events) assert.ok(["expand", "delete", "eos_fill"].includes(e.kind) && e.step >= 1);
      }
    }
    for (const s of var0.samples) {
      // Each expand adds a position and each delete removes one: the final length is their balance.
      const count = (k: string) => s.events.filter((e) => e.kind === k).length;
      assert.equal(s.length, 4 + count("expand") - count("delete"), `events ${JSON.stringify(s.events)} vs length ${s.length}`);
    }

    for (const w of workers) {
      const res = await push(w.client, 1, weightsOf(w.dir));
      assert.equal(res.accepted, true, res.message);
    }
    const [fixed1, var1] = await run();
    for (const res of [fixed1, var1]) {
      assert.equal(Number(res.policyVersion), 1);
      for (const s of res.samples) assert.equal(Number(s.policyVersion), 1, "samples after the swap use version 1");
    }
    // The same weights under version 1 and the same seed fill the same middles.
    assert.deepEqual(
      var1.samples.map((s) => s.middleText),
      var0.samples.map((s) => s.middleText),
    );
  });

  test("bad input is INVALID_ARGUMENT naming the field", async () => {
    const c = workers[0]!.client;
    const bad = async (req: object, field: RegExp) =>
      assert.rejects(infill(c, req), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
        assert.match(err.details, field);
        return true;
      });
    await bad({ items: [] }, /^items: /);
    await bad({ items: [{ id: "x", prefix: "", suffix: "" }] }, /^items\[0\]\.prefix: .*both empty/);
    await bad({ items: [items()[0], { ...items()[1], initialLength: 0 }] }, /^items\[1\]\.initial_length: /);
    await bad({ items: items({ initialLength: 8, maxLength: 4 }) }, /^items\[0\]\.max_length: /);
    await bad({ items: items({ initialLength: 100000 }) }, /^items\[0\]\.initial_length: /);
    await bad({ items: items(), variableLength: true }, /^variable_length: .*expand/);
    await bad({ items: items(), params: { temperature: -1 } }, /^temperature: /);
    await bad({ items: items(), samplesPerItem: 5000 }, /^samples_per_item: /);
    // The KV cache is for fixed length: variable length (the infill model's default) refuses one.
    await assert.rejects(infill(workers[1]!.client, { items: items(), params: { cache: "dual" } }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /^cache: dual is for fixed-length infilling only/);
      return true;
    });
    // The length cuts: variable length only, each in [0, 1].
    const badOn = (client: typeof c, req: object, field: RegExp) =>
      assert.rejects(infill(client, req), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
        assert.match(err.details, field);
        return true;
      });
    await badOn(workers[1]!.client, { items: items(), eosCut: 1.5 }, /^eos_cut: .*\[0, 1\].*got 1\.5/);
    await badOn(workers[1]!.client, { items: items(), variableLength: false, expandCut: 0.2 }, /^expand_cut: .*variable-length infilling only/);
    await badOn(c, { items: items(), eosCut: 0.2 }, /^eos_cut: .*variable-length infilling only/);
    // The length search: variable length only, an integer in [0, 16]; a known syntax check.
    await badOn(workers[1]!.client, { items: items(), lengthSearch: 17 }, /^length_search: .*\[0, 16\].*got 17/);
    await badOn(c, { items: items(), lengthSearch: 2 }, /^length_search: .*variable-length infilling only/);
    await badOn(workers[1]!.client, { items: items(), syntaxCheck: "rust" }, /^syntax_check: must be one of python, none/);
  });

  test("variable length with the length search (the infilling model's default): candidates reported, the expand/delete decode's own length kept on record", async () => {
    const req = { items: items({ initialLength: 4, maxLength: 24 }), params: { temperature: 0 } };
    const radius = (JSON.parse(readFileSync(join(INFILL_DIR, "manifest.json"), "utf8")) as { infill_decoding: { length_search: number } }).infill_decoding.length_search;
    assert.ok(radius > 0, "the infilling model searches by default");
    const plain = await infill(workers[1]!.client, { ...req, lengthSearch: 0 });
    const searched = await infill(workers[1]!.client, req);
    plain.samples.forEach((p, i) => {
      const s = searched.samples[i]!;
      assert.equal(p.lengthCandidates, 0, "no search asked, none reported");
      assert.equal(s.variableLength, p.length, "the same expand/delete decode before the search");
      assert.ok(s.lengthCandidates >= 1 && s.lengthCandidates <= 2 * radius + 2, `${s.lengthCandidates} candidates for radius ${radius}`);
      assert.ok(s.lengthScreenedOut >= 0 && s.lengthScreenedOut <= s.lengthCandidates);
      assert.ok(s.length <= Math.min(24, p.length + radius));
      assert.ok(s.nfe > p.nfe, `${s.nfe} forwards with the search vs ${p.nfe}`);
    });
  });

  test("variable length with the length cuts set: every sample's length is the balance of its expands and deletes", async () => {
    const res = await infill(workers[1]!.client, {
      items: items({ initialLength: 4, maxLength: 24 }),
      samplesPerItem: 2,
      eosCut: 0.3,
      expandCut: 0.05,
      lengthSearch: 0,
      params: { temperature: 0, trace: true },
    });
    assert.equal(res.samples.length, ROWS.length * 2);
    for (const s of res.samples) {
      const count = (k: string) => s.events.filter((e) => e.kind === k).length;
      assert.ok(s.length <= 24, `at most max_length tokens, got ${s.length}`);
      assert.equal(s.length, 4 + count("expand") - count("delete"), `events ${JSON.stringify(s.events)} vs length ${s.length}`);
    }
  });
});
