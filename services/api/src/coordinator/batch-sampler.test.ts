import { test } from "node:test";
import assert from "node:assert/strict";
import { CurriculumSampler, curriculumKey, sampleBatch, type Visit } from "./batch-sampler.js";
import { passRate } from "./pass-at-1.js";

test("batches are deterministic per (seed, step) and cover every row once per epoch", () => {
  assert.deepEqual(sampleBatch(10, 4, 3, 2), sampleBatch(10, 4, 3, 2));
  assert.notDeepEqual(sampleBatch(10, 4, 3, 1), sampleBatch(10, 4, 4, 1));
  const epoch = [1, 2, 3, 4, 5].flatMap((s) => sampleBatch(10, 2, 9, s));
  assert.deepEqual(
    [...epoch].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.throws(() => sampleBatch(0, 1, 1, 1), /empty dataset/);
});

test("pass@1 carries a 95% Wilson interval", () => {
  const r = passRate(30, 100);
  assert.equal(r.passAt1, 0.3);
  assert.ok(Math.abs(r.ciLow - 0.2189) < 1e-3 && Math.abs(r.ciHigh - 0.3958) < 1e-3, JSON.stringify(r));
  assert.deepEqual(passRate(0, 0), { passAt1: 0, n: 0, ciLow: 0, ciHigh: 0 });
  assert.equal(passRate(0, 20).ciLow, 0);
  assert.equal(passRate(20, 20).ciHigh, 1);
});

const opts = { seed: 7, size: 4, window: 2, explore: 0, lag: 0 };

test("curriculum: without visits it walks the same shuffle as sampleBatch", () => {
  const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
  const s = new CurriculumSampler(keys, opts);
  for (let step = 1; step <= 12; step++) assert.deepEqual(s.draw(step), { indices: sampleBatch(30, 4, 7, step), skipped: 0 });
});

test("curriculum: a key saturated on its last `window` visits is skipped until an informative visit clears it", () => {
  // 10 rows of 2 keys: even rows key "a", odd rows key "b".
  const keys = Array.from({ length: 10 }, (_, i) => (i % 2 ? "b" : "a"));
  const s = new CurriculumSampler(keys, { ...opts, size: 2 });
  const visitsOf = (idx: number[], satA: boolean): Visit[] => idx.map((row) => ({ row, saturated: keys[row] === "a" ? satA : false }));
  let step = 1;
  // "a" saturated on two visits (in one step or across steps): skipped from then on.
  while (!s.isSkipped("a")) {
    const b = s.draw(step);
    s.record(step++, visitsOf(b.indices, true));
    s.draw(step); // the record of step k is applied when step k + 1 is drawn
  }
  for (let k = 0; k < 10; k++) {
    const b = s.draw(step);
    assert.ok(b.indices.every((r) => keys[r] === "b"), `step ${step}: ${b.indices.join(",")}`);
    assert.ok(b.skipped > 0 || k > 0);
    s.record(step++, visitsOf(b.indices, true));
  }
  // One informative visit of "a" (e.g. an exploration draw) clears its streak.
  s.record(step++, [{ row: 0, saturated: false }]);
  s.draw(step);
  assert.equal(s.isSkipped("a"), false);
});

test("curriculum: deterministic for a seed, the same batches after a replay of the recorded visits (a restarted api)", () => {
  const keys = Array.from({ length: 40 }, (_, i) => `k${i % 8}`);
  const outcome = (row: number) => row % 3 !== 0; // a fixed reward pattern: rows ≡ 0 mod 3 informative
  const run = (s: CurriculumSampler, from: number, to: number, log: number[][], rec: Map<number, Visit[]>) => {
    for (let step = from; step <= to; step++) {
      const b = s.draw(step);
      log.push(b.indices);
      const v = b.indices.map((row) => ({ row, saturated: outcome(row) }));
      rec.set(step, v);
      s.record(step, v);
    }
  };
  const o = { ...opts, window: 1, explore: 0.2 };
  const a: number[][] = [];
  const recA = new Map<number, Visit[]>();
  run(new CurriculumSampler(keys, o), 1, 20, a, recA);
  const b: number[][] = [];
  run(new CurriculumSampler(keys, o), 1, 20, b, new Map());
  assert.deepEqual(a, b);
  // A fresh sampler given steps 1..12's visits draws steps 13..20 as the first did.
  const replay = new CurriculumSampler(keys, o);
  for (let step = 1; step <= 12; step++) replay.record(step, recA.get(step)!);
  const c: number[][] = [];
  run(replay, 13, 20, c, new Map());
  assert.deepEqual(c, a.slice(12));
  // A step asked for again (a retry, a prefetch) gets the same batch.
  assert.deepEqual(replay.draw(20).indices, a[19]);
  // Another seed, other batches.
  const d: number[][] = [];
  run(new CurriculumSampler(keys, { ...o, seed: 8 }), 1, 5, d, new Map());
  assert.notDeepEqual(d, a.slice(0, 5));
});

test("curriculum: with lag 1 (overlap) step k's batch does not depend on step k - 1's visits", () => {
  const keys = Array.from({ length: 20 }, (_, i) => `k${i % 4}`);
  const o = { ...opts, window: 1, lag: 1 };
  const s1 = new CurriculumSampler(keys, o);
  const s2 = new CurriculumSampler(keys, o);
  const b1 = s1.draw(1);
  s2.draw(1);
  s1.record(1, b1.indices.map((row) => ({ row, saturated: true })));
  s2.record(1, b1.indices.map((row) => ({ row, saturated: false })));
  assert.deepEqual(s1.draw(2), s2.draw(2));
  assert.notDeepEqual(s1.draw(3), s2.draw(3));
});

test("curriculum: skipped keys are revisited at the exploration rate; with every key skipped and no exploration it still fills a batch", () => {
  const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
  const explored = new CurriculumSampler(keys, { ...opts, window: 1, explore: 0.25, size: 10 });
  explored.draw(1);
  explored.record(1, keys.map((_, row) => ({ row, saturated: true }))); // every key saturated once
  let taken = 0;
  let passed = 0;
  for (let step = 2; step <= 41; step++) {
    const b = explored.draw(step);
    taken += b.indices.length;
    passed += b.skipped;
  }
  const rate = taken / (taken + passed);
  assert.ok(rate > 0.18 && rate < 0.32, `exploration rate ${rate}`);
  const none = new CurriculumSampler(keys, { ...opts, window: 1, explore: 0, size: 10 });
  none.draw(1);
  none.record(1, keys.map((_, row) => ({ row, saturated: true })));
  const b = none.draw(2);
  assert.equal(b.indices.length, 10);
  assert.equal(b.skipped, 100);
});

test("curriculum: when few keys are left unsaturated a batch fills up without taking a row twice", () => {
  // 8 rows, one key each; k0..k6 saturated, k7 informative: a batch of 4 takes row 7 once and 3 others.
  const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
  const s = new CurriculumSampler(keys, { ...opts, window: 1, explore: 0, size: 4 });
  s.draw(1);
  s.record(1, keys.map((_, row) => ({ row, saturated: row !== 7 })));
  for (let step = 2; step <= 13; step++) {
    const b = s.draw(step);
    assert.equal(new Set(b.indices).size, 4, `step ${step}: ${b.indices.join(",")} repeats a row`);
    assert.ok(b.indices.includes(7), `step ${step}: the informative row 7 is missing from ${b.indices.join(",")}`);
    s.record(step, b.indices.map((row) => ({ row, saturated: row !== 7 })));
  }
});

test("curriculum: on a population with 30 % informative keys it rolls out more informative groups than the plain shuffle", () => {
  // 200 keys × 5 rows: keys 0..59 informative (mixed rewards), 60..199 saturated (all pass / all fail).
  const keys = Array.from({ length: 1000 }, (_, i) => `k${i % 200}`);
  const saturatedRow = (row: number) => row % 200 >= 60;
  const informativeShare = (s: CurriculumSampler) => {
    let inf = 0;
    let all = 0;
    for (let step = 1; step <= 300; step++) {
      const b = s.draw(step);
      s.record(step, b.indices.map((row) => ({ row, saturated: saturatedRow(row) })));
      if (step > 100) {
        inf += b.indices.filter((r) => !saturatedRow(r)).length;
        all += b.indices.length;
      }
    }
    return inf / all;
  };
  const plain = informativeShare(new CurriculumSampler(keys, { ...opts, window: 1_000_000 }));
  const cur = informativeShare(new CurriculumSampler(keys, { ...opts, window: 2, explore: 0.1 }));
  assert.ok(Math.abs(plain - 0.3) < 0.06, `plain ${plain}`);
  assert.ok(cur > 0.6, `curriculum ${cur}`);
});

test("curriculum: a row's key is its template, else its task id; bad settings are refused", () => {
  assert.equal(curriculumKey({ task_id: "t1", template: "a/b" }), "a/b");
  assert.equal(curriculumKey({ task_id: "t1" }), "t1");
  assert.throws(() => new CurriculumSampler([], opts), /empty dataset/);
  assert.throws(() => new CurriculumSampler(["a"], { ...opts, window: 0 }), /window must be >= 1, got 0/);
  assert.throws(() => new CurriculumSampler(["a"], { ...opts, explore: 2 }), /explore must be in \[0, 1\], got 2/);
});
