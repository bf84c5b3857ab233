// pass@k: the unbiased estimator against the binomial form, edge cases and the per-task rule.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseKs, passAtK, passAtKOverTasks } from "./pass-at-k.js";

/** 1 - C(n-c, k) / C(n, k) with exact BigInt binomials (the definition). */
function byBinomials(n: number, c: number, k: number): number {
  const choose = (a: number, b: number): bigint => {
    if (b < 0 || b > a) return 0n;
    let r = 1n;
    for (let i = 0; i < b; i++) r = (r * BigInt(a - i)) / BigInt(i + 1);
    return r;
  };
  const num = choose(n - c, k);
  const den = choose(n, k);
  // Ratio of two big integers to 1e-15 relative precision.
  const scale = 10n ** 18n;
  return 1 - Number((num * scale) / den) / 1e18;
}

test("the product form equals the binomial definition", () => {
  for (const n of [1, 2, 5, 10, 20, 200]) {
    for (const c of [0, 1, Math.floor(n / 3), n - 1, n].filter((x) => x >= 0 && x <= n)) {
      for (const k of [1, 2, 5, 10, 100].filter((x) => x <= n)) {
        assert.ok(Math.abs(passAtK(n, c, k) - byBinomials(n, c, k)) < 1e-12, `n=${n} c=${c} k=${k}`);
      }
    }
  }
});

test("pass@1 is c/n; all or nothing; k > n - c is certain", () => {
  assert.ok(Math.abs(passAtK(10, 3, 1) - 0.3) < 1e-15);
  assert.equal(passAtK(10, 0, 5), 0);
  assert.equal(passAtK(10, 10, 5), 1);
  assert.equal(passAtK(10, 6, 5), 1);
  // Large n: no overflow, no NaN (C(1000, 500) is ~1e299).
  const v = passAtK(1000, 10, 500);
  assert.ok(v > 0.99 && v <= 1 && Number.isFinite(v));
  assert.throws(() => passAtK(3, 1, 5), /needs at least 5 samples/);
  assert.throws(() => passAtK(3, 4, 1), RangeError);
});

test("over tasks: a k is reported only when every answered task has n >= k; unanswered tasks count 0", () => {
  const r = passAtKOverTasks(
    [
      { task_id: "a", n: 10, c: 10 },
      { task_id: "b", n: 20, c: 0 },
      { task_id: "c", n: 0, c: 0 },
      { task_id: "d", n: 10, c: 1 },
    ],
    [1, 10, 100],
  );
  assert.deepEqual(Object.keys(r.pass_at_k), ["1", "10"]);
  assert.ok(Math.abs(r.pass_at_k["1"]! - (1 + 0 + 0 + 0.1) / 4) < 1e-12);
  assert.ok(Math.abs(r.pass_at_k["10"]! - (1 + 0 + 0 + 1) / 4) < 1e-12);
  assert.deepEqual(r.skipped, [{ k: 100, reason: "needs at least 100 samples for every task; the fewest is 10 (task a)" }]);
});

test("--k parsing", () => {
  assert.deepEqual(parseKs("10,1,100,10"), [1, 10, 100]);
  assert.throws(() => parseKs("1,,5"), /positive integers/);
  assert.throws(() => parseKs("0"), /positive integers/);
  assert.throws(() => parseKs("1.5"), /positive integers/);
});
