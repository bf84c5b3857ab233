import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { loadDataset, testCount } from "../datasets/index.js";
import { TOY_FAMILIES } from "./families/index.js";
import { stringsFamily } from "./families/strings.js";
import { generateToySuite, TOY_SPLITS, toJsonl } from "./generate-suite.js";
import { adjacentPairs } from "./holdout.js";
import type { TaskRow } from "./task-row.js";
import { testCountOf } from "./task-row.js";

const SMALL = { trainSize: 600, testInstancesSize: 60, testCompositionalSize: 60 };
const suite = generateToySuite();
const DATASET_DIR = new URL("../../../datasets/toy/", import.meta.url);

test("the same seed gives byte-identical splits; another seed different ones", () => {
  const a = generateToySuite({ ...SMALL, seed: "s1" });
  const b = generateToySuite({ ...SMALL, seed: "s1" });
  const c = generateToySuite({ ...SMALL, seed: "s2" });
  for (const split of TOY_SPLITS) {
    assert.equal(toJsonl(a[split]), toJsonl(b[split]), split);
    assert.notEqual(toJsonl(a[split]), toJsonl(c[split]), split);
  }
});

test("the shipped dataset files are exactly what the default seed generates", async () => {
  for (const split of TOY_SPLITS) {
    const shipped = await readFile(new URL(`${split}.jsonl`, DATASET_DIR), "utf8");
    assert.equal(shipped, toJsonl(suite[split]), `datasets/toy/${split}.jsonl is stale: rerun gen-tasks`);
  }
});

test("a family whose distinct tasks run out is reported, not silently short", () => {
  const big = generateToySuite({ trainSize: 10_000, testInstancesSize: 0, testCompositionalSize: 0, families: [stringsFamily] });
  assert.equal(big.shortfalls.length, 1);
  const s = big.shortfalls[0];
  assert.ok(s && s.family === "strings" && s.split === "train" && s.wanted === 10_000 && s.got === big.train.length && s.got < 10_000);
  assert.deepEqual(suite.shortfalls, []);
});

test("default sizes: 5000 train, 200 per test split, every family equally", () => {
  assert.equal(suite.train.length, 5000);
  assert.equal(suite["test-instances"].length, 200);
  assert.equal(suite["test-compositional"].length, 200);
  for (const split of TOY_SPLITS) {
    const perFamily = new Map<string, number>();
    for (const r of suite[split]) perFamily.set(r.meta.family, (perFamily.get(r.meta.family) ?? 0) + 1);
    assert.deepEqual([...perFamily.keys()].sort(), TOY_FAMILIES.map((f) => f.name).sort(), split);
    assert.equal(new Set(perFamily.values()).size, 1, `${split} is unbalanced: ${JSON.stringify([...perFamily])}`);
  }
});

test("every row is well formed: >= 5 tests, a fenced reference, ids unique, both test kinds used", () => {
  const ids = new Set<string>();
  const kinds = new Set<string>();
  for (const split of TOY_SPLITS) {
    for (const r of suite[split]) {
      assert.ok(testCountOf(r) >= 5, `${r.task_id} has ${testCountOf(r)} tests`);
      assert.match(r.reference, /^```python\n[\s\S]+\n```$/, r.task_id);
      assert.equal(r.meta.split, split);
      assert.ok(!ids.has(r.task_id), `duplicate task_id ${r.task_id}`);
      assert.ok(!r.task_id.includes(":"), "no ':' in ids (BullMQ job ids)");
      ids.add(r.task_id);
      kinds.add(r.tests.kind);
      if (r.meta.form === "function") {
        assert.equal(r.tests.kind, "assert");
        assert.equal(r.tests.entry_point, "f");
        assert.match(r.reference, /^```python\ndef f\(/);
      } else {
        assert.equal(r.tests.kind, "stdio");
        assert.ok(r.tests.cases.every((c) => c.input.endsWith("\n") && c.output.endsWith("\n")));
      }
    }
  }
  assert.deepEqual([...kinds].sort(), ["assert", "stdio"]);
});

test("the shipped files parse as rlmesh canonical rows (what the api and rlmesh eval load)", () => {
  for (const split of TOY_SPLITS) {
    const file = fileURLToPath(new URL(`${split}.jsonl`, DATASET_DIR));
    const rows = loadDataset(file, "auto");
    assert.equal(rows.length, suite[split].length);
    assert.ok(rows.every((r) => r.source === "rlmesh" && testCount(r.tests) >= 5 && r.reference !== undefined));
  }
});

const instanceOf = (r: TaskRow): string => String(r.meta.instance);

test("splits are disjoint: no shared prompt or instance, in either form", () => {
  const trainPrompts = new Set(suite.train.map((r) => r.prompt));
  const trainInstances = new Set(suite.train.map(instanceOf));
  assert.equal(trainPrompts.size, suite.train.length, "train prompts are unique");
  for (const split of ["test-instances", "test-compositional"] as const) {
    for (const r of suite[split]) {
      assert.ok(!trainPrompts.has(r.prompt), `${r.task_id} prompt is in train`);
      assert.ok(!trainInstances.has(instanceOf(r)), `${r.task_id} instance ${instanceOf(r)} is in train`);
    }
  }
  const inst = new Set(suite["test-instances"].map(instanceOf));
  assert.ok(suite["test-compositional"].every((r) => !inst.has(instanceOf(r))));
});

test("test-instances reuse training templates; test-compositional templates are all unseen and hold a held-out pair", () => {
  const trainTemplates = new Set(suite.train.map((r) => r.meta.template));
  for (const r of suite["test-instances"]) assert.ok(trainTemplates.has(r.meta.template), `${r.meta.template} not trained`);
  const templates = new Map(TOY_FAMILIES.flatMap((f) => f.templates.map((t) => [t.id, t] as const)));
  for (const r of suite["test-compositional"]) {
    assert.ok(!trainTemplates.has(r.meta.template), `${r.meta.template} is also in train`);
    const t = templates.get(r.meta.template);
    assert.ok(t, r.meta.template);
    const held = suite.heldPairs[r.meta.family] ?? [];
    assert.ok(
      adjacentPairs(t.kinds).some((p) => held.includes(p)),
      `${t.id} has no held-out pair`,
    );
  }
});

test("every operation kind of every family is trained at every position it occurs", () => {
  const trained = new Set(
    suite.train.flatMap((r) => {
      const t = TOY_FAMILIES.flatMap((f) => f.templates).find((x) => x.id === r.meta.template);
      return t ? t.kinds.map((k, i) => `${t.family}/${i}:${k}`) : [];
    }),
  );
  for (const f of TOY_FAMILIES) {
    for (const t of f.templates) {
      t.kinds.forEach((k, i) => assert.ok(trained.has(`${f.name}/${i}:${k}`), `${f.name} never trains ${k} at ${i}`));
    }
  }
});

test("responses stay short (the tiny model learns one-line answers)", () => {
  const MAX_REFERENCE_CHARS = 120;
  for (const r of suite.train) assert.ok(r.reference.length <= MAX_REFERENCE_CHARS, `${r.task_id}: ${r.reference}`);
});
