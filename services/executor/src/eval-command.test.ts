// `rlmesh eval` and `rlmesh bench sandbox` end to end (queue -> executor -> Docker), for every
// dataset format and test kind. Needs dockerd and redis-server.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchSandboxCommand } from "./bench-command.js";
import { evalCommand } from "./eval-command.js";
import { defaultMbppPath } from "./bench-command.js";
import { requireDockerAndImage } from "./test-support.js";

let dir: string;
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const fence = (code: string) => "```python\n" + code + "\n```";

before(async () => {
  await requireDockerAndImage();
  dir = mkdtempSync(join(tmpdir(), "rlmesh-eval-test-"));
  delete process.env.REDIS_URL; // exercise the private redis-server path
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await evalCommand(argv, (l) => lines.push(l));
  return { code, lines };
}

test("eval --json on HumanEval with canonical solutions", { timeout: 60_000 }, async () => {
  const file = join(dir, "he.jsonl");
  writeFileSync(
    file,
    jsonl([
      {
        task_id: "HE/0",
        prompt: "def add(a, b):\n",
        entry_point: "add",
        canonical_solution: "    return a + b\n",
        test: "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert abs(candidate(0.1, 0.2) - 0.3) < 1e-9\n",
      },
      {
        task_id: "HE/1",
        prompt: "def neg(x):\n",
        entry_point: "neg",
        canonical_solution: "    return -x\n",
        test: "def check(candidate):\n    assert candidate(1) == -1\n",
      },
    ]),
  );
  const { code, lines } = await run(["--dataset", file, "--json"]);
  assert.equal(code, 0);
  const summary = JSON.parse(lines.at(-1)!);
  assert.deepEqual(Object.keys(summary).sort(), [
    "by_status",
    "executions_per_second",
    "failed",
    "pass_at_k",
    "pass_at_k_skipped",
    "passed",
    "samples_per_task",
    "seconds",
    "tasks",
    "total",
    "unanswered_tasks",
    "unmatched_samples",
    "unscored_by_status",
    "unscored_samples",
  ]);
  assert.equal(summary.unscored_samples, 0);
  assert.deepEqual(summary.pass_at_k, { "1": 1 });
  assert.deepEqual(
    summary.pass_at_k_skipped.map((s: { k: number }) => s.k),
    [10, 100],
  );
  assert.equal(summary.total, 2);
  assert.equal(summary.passed, 2);
  assert.deepEqual(summary.by_status, { passed: 2 });
});

test("eval with RESPONSES.jsonl on LiveCodeBench stdin and functional rows", { timeout: 60_000 }, async () => {
  const data = join(dir, "lcb.jsonl");
  writeFileSync(
    data,
    jsonl([
      {
        question_id: "s1",
        question_content: "a+b",
        public_test_cases: JSON.stringify([
          { input: "1 2\n", output: "3\n", testtype: "stdin" },
          { input: "0.5 0.25", output: "0.75", testtype: "stdin" },
        ]),
      },
      { question_id: "s2", question_content: "a*b", public_test_cases: [{ input: "2 3\n", output: "6\n", testtype: "stdin" }] },
    ]),
  );
  const fnData = join(dir, "lcb-fn.jsonl");
  writeFileSync(
    fnData,
    jsonl([
      {
        question_id: "f1",
        question_content: "two sum",
        public_test_cases: [{ input: "[2,7,11,15]\n9", output: "[0,1]", testtype: "functional" }],
        metadata: { func_name: "twoSum" },
      },
    ]),
  );
  const responses = join(dir, "responses.jsonl");
  writeFileSync(
    responses,
    jsonl([
      { task_id: "s1", response: "Sure:\n" + fence("a, b = map(float, input().split())\nprint(a + b if (a + b) % 1 else int(a + b))") },
      { task_id: "s2", response: "no code block here" },
      {
        task_id: "f1",
        response: fence(
          "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n        for i, n in enumerate(nums):\n            if target - n in seen:\n                return [seen[target - n], i]\n            seen[n] = i",
        ),
      },
    ]),
  );
  let r = await run(["--dataset", data, "--format", "lcb", "--solutions", responses, "--json"]);
  assert.equal(r.code, 0);
  assert.deepEqual(JSON.parse(r.lines.at(-1)!).by_status, { passed: 1, format_error: 1 });
  r = await run(["--dataset", fnData, "--solutions", responses, "--concurrency", "1", "--json"]);
  assert.deepEqual(JSON.parse(r.lines.at(-1)!).by_status, { passed: 1 });
});

/** Runs with stderr captured. */
async function runQuiet(argv: string[]): Promise<{ code: number; lines: string[]; stderr: string }> {
  const errors: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (s: string) => (errors.push(String(s)), true);
  try {
    return { ...(await run(argv)), stderr: errors.join("") };
  } finally {
    process.stderr.write = write;
  }
}

const HE_TWO = [
  { task_id: "HE/0", prompt: "def add(a, b):\n", entry_point: "add", canonical_solution: "    return a + b\n", test: "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n" },
  { task_id: "HE/1", prompt: "def neg(x):\n", entry_point: "neg", canonical_solution: "    return -x\n", test: "def check(candidate):\n    assert candidate(1) == -1\n" },
];

test("eval of a samples.jsonl with many samples per task: pass@k, skipped ks, --results per sample", { timeout: 120_000 }, async () => {
  const data = join(dir, "he2.jsonl");
  writeFileSync(data, jsonl(HE_TWO));
  const samples = join(dir, "samples.jsonl");
  // HE/0: 4 completions (human-eval style), 2 correct. HE/1: 4 responses, 1 correct. Interleaved.
  writeFileSync(
    samples,
    jsonl([
      { task_id: "HE/0", completion: "    return a + b\n" },
      { task_id: "HE/1", response: fence("def neg(x):\n    return x") },
      { task_id: "HE/0", completion: "    return a - b\n" },
      { task_id: "HE/1", response: fence("def neg(x):\n    return -x") },
      { task_id: "HE/0", completion: "    return b + a\n" },
      { task_id: "HE/1", response: "I cannot" },
      { task_id: "HE/0", completion: "    return 3\n" },
      { task_id: "HE/1", response: fence("def neg(x):\n    return 0") },
    ]),
  );
  const out = join(dir, "results.jsonl");
  const r = await runQuiet(["--dataset", data, "--solutions", samples, "--k", "1,2,10", "--results", out, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "nothing to warn about");
  const s = JSON.parse(r.lines.at(-1)!);
  assert.equal(s.total, 8, "no sample dropped");
  assert.equal(s.passed, 3);
  assert.deepEqual(s.samples_per_task, { min: 4, max: 4 });
  assert.ok(Math.abs(s.pass_at_k["1"] - (2 / 4 + 1 / 4) / 2) < 1e-12);
  // 1 - C(n-c,2)/C(n,2): HE/0 1 - 1/6, HE/1 1 - 3/6.
  assert.ok(Math.abs(s.pass_at_k["2"] - (5 / 6 + 1 / 2) / 2) < 1e-12);
  assert.deepEqual(s.pass_at_k_skipped, [{ k: 10, reason: "needs at least 10 samples for every task; the fewest is 4 (task HE/0)" }]);
  const lines = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => [l.task_id, l.sample, l.line, l.reward, l.status]),
    [
      ["HE/0", 0, 1, 1, "passed"],
      ["HE/0", 1, 3, 0, "failed"],
      ["HE/0", 2, 5, 1, "passed"],
      ["HE/0", 3, 7, 0, "failed"],
      ["HE/1", 0, 2, 0, "failed"],
      ["HE/1", 1, 4, 1, "passed"],
      ["HE/1", 2, 6, 0, "format_error"],
      ["HE/1", 3, 8, 0, "failed"],
    ],
  );
  // The same samples as batch jobs of 3 (one BullMQ job per 3 candidates): the same result per sample.
  const outBatched = join(dir, "results-batched.jsonl");
  const b = await runQuiet(["--dataset", data, "--solutions", samples, "--k", "1,2,10", "--results", outBatched, "--batch", "3", "--json"]);
  assert.equal(b.code, 0, b.stderr);
  const sb = JSON.parse(b.lines.at(-1)!);
  assert.deepEqual([sb.total, sb.passed, sb.pass_at_k], [s.total, s.passed, s.pass_at_k]);
  const batched = readFileSync(outBatched, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(
    batched.map((l) => [l.task_id, l.sample, l.line, l.reward, l.status]),
    lines.map((l) => [l.task_id, l.sample, l.line, l.reward, l.status]),
  );
  // The text report says which k were skipped and why.
  const text = await runQuiet(["--dataset", data, "--solutions", samples, "--k", "1,10"]);
  assert.equal(text.code, 0);
  assert.ok(text.lines.some((l) => /^pass@1 37\.5% over 2 task\(s\), n = 4 sample\(s\) per task$/.test(l)), text.lines.join("\n"));
  assert.ok(text.lines.some((l) => /pass@10 not reported: needs at least 10 samples for every task; the fewest is 4/.test(l)));
});

test("eval with no sample naming a dataset task fails (exit 2) naming ids; a partial match warns", { timeout: 60_000 }, async () => {
  const data = join(dir, "he-ids.jsonl");
  writeFileSync(data, jsonl(HE_TWO));
  const wrong = join(dir, "wrong-ids.jsonl");
  writeFileSync(wrong, jsonl(Array.from({ length: 10 }, (_, i) => ({ task_id: i, completion: "    return a + b\n" }))));
  const r = await runQuiet(["--dataset", data, "--solutions", wrong, "--json"]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.lines, [], "no 0/10 summary");
  assert.match(r.stderr, /none of the 10 sample\(s\) names a task of the dataset \(2 task\(s\)\): sample task ids "0", "1", "2", "3", "4", … \(10 in all\); dataset task ids "HE\/0", "HE\/1"/);

  const partial = join(dir, "partial-ids.jsonl");
  writeFileSync(partial, jsonl([{ task_id: "HE/0", completion: "    return a + b\n" }, { task_id: "HE/9", completion: "x" }]));
  const p = await runQuiet(["--dataset", data, "--solutions", partial, "--json"]);
  assert.equal(p.code, 0);
  assert.match(p.stderr, /warning: 1 of 2 sample\(s\) name a task id the dataset does not have \(1 distinct: "HE\/9"\)/);
  assert.match(p.stderr, /warning: 1 of 2 task\(s\) have no sample \("HE\/1"\); each counts as 0 in pass@k/);
  const s = JSON.parse(p.lines.at(-1)!);
  assert.equal(s.total, 1);
  assert.equal(s.unmatched_samples, 1);
  assert.equal(s.unanswered_tasks, 1);
  assert.deepEqual(s.pass_at_k, { "1": 0.5 });
});

test("eval reports bad input with the line and field, and bad usage", async () => {
  const file = join(dir, "bad.jsonl");
  writeFileSync(
    file,
    jsonl([
      { task_id: 1, prompt: "p", code: "x", test_list: ["assert True"] },
      { task_id: 2, prompt: "p", code: "x", test_list: "assert True" },
    ]),
  );
  const errors: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (s: string) => (errors.push(String(s)), true);
  try {
    assert.equal((await run(["--dataset", file])).code, 2);
    assert.equal((await run(["--format", "mbpp"])).code, 2);
    assert.equal((await run(["--dataset", file, "--concurrency", "0"])).code, 2);
    assert.equal((await run(["--dataset", file, "--batch", "65"])).code, 2);
  } finally {
    process.stderr.write = write;
  }
  assert.match(errors.join(""), /--batch must be at most 64, got 65/);
  assert.match(errors.join(""), /bad\.jsonl:2: field "test_list"/);
  assert.match(errors.join(""), /--dataset is required/);
});

test("bench sandbox prints the three rates and ratios", { timeout: 300_000 }, async () => {
  const lines: string[] = [];
  assert.equal(await benchSandboxCommand(["--json", "--cold-sample", "8"], (l) => lines.push(l)), 0);
  const r = JSON.parse(lines.at(-1)!);
  for (const k of ["executor_per_s", "bare_subprocess_per_s", "cold_docker_run_per_s", "ratio_vs_bare", "ratio_vs_cold"]) {
    assert.ok(typeof r[k] === "number" && r[k] > 0, `${k} = ${r[k]}`);
  }
  assert.equal(r.executor_passed, 427);
  assert.equal(r.bare_passed, 427);
  assert.ok(r.ratio_vs_cold > 1, "a warm pool beats a cold container per candidate");
  // CPU time per candidate, sequential: bare python3 and every backend's sandbox (all its processes) + executor.
  assert.ok(r.bare_sequential_cpu_ms_per_candidate > 0, `bare cpu = ${r.bare_sequential_cpu_ms_per_candidate}`);
  for (const [name, b] of Object.entries(r.backends as Record<string, { sequential_cpu_ms_per_candidate: number; cpu_ratio_vs_bare: number }>)) {
    assert.ok(b.sequential_cpu_ms_per_candidate > 0, `${name} cpu = ${b.sequential_cpu_ms_per_candidate}`);
    assert.ok(b.cpu_ratio_vs_bare > 0, `${name} cpu ratio = ${b.cpu_ratio_vs_bare}`);
    // ... split by process role: each role of the two-process judge did work on every MBPP row.
    const roles = (b as unknown as { sequential_cpu_roles_ms?: Record<string, number> }).sequential_cpu_roles_ms;
    assert.ok(roles, `${name}: no CPU split by role`);
    for (const role of ["candidate", "pid1", "supervisor", "judge"]) assert.ok(roles[role]! > 0, `${name} ${role} cpu = ${roles[role]}`);
    const sum = roles.candidate! + roles.pid1! + roles.supervisor! + roles.judge!;
    assert.ok(sum <= b.sequential_cpu_ms_per_candidate + 0.05, `${name}: roles ${sum} ms > total ${b.sequential_cpu_ms_per_candidate} ms`);
  }
  console.log(`# bench: ${lines.at(-1)}`);
});

test("bench sandbox --prefetch 0,1 --rounds 2 --exclude-tasks: every executor setting and path on the kept rows, each round", { timeout: 300_000 }, async () => {
  const file = join(dir, "mbpp6.jsonl");
  const six = readFileSync(defaultMbppPath(), "utf8").split("\n").slice(0, 6);
  writeFileSync(file, six.join("\n") + "\n");
  const dropped = String((JSON.parse(six[2]!) as { task_id: number }).task_id);
  const lines: string[] = [];
  const argv = ["--dataset", file, "--exclude-tasks", dropped, "--prefetch", "0,1", "--batch", "1,4", "--rounds", "2", "--backends", "docker", "--cold-sample", "1", "--json"];
  assert.equal(await benchSandboxCommand(argv, (l) => lines.push(l)), 0);
  const r = JSON.parse(lines.at(-1)!);
  assert.equal(r.candidates, 5);
  assert.equal(r.rounds, 2);
  assert.equal(r.bare_passed, 5);
  const d = r.backends.docker;
  // Batch sizes outermost, then prefetch: every setting scored every kept row.
  assert.deepEqual(
    d.executors.map((e: { prefetch: number; batch: number; passed: number }) => [e.batch, e.prefetch, e.passed]),
    [
      [1, 0, 5],
      [1, 1, 5],
      [4, 0, 5],
      [4, 1, 5],
    ],
  );
  assert.equal(d.executor_per_s, d.executors[0].per_s, "the first setting is the headline");
  assert.equal(d.pool_passed, 5);
  for (const e of d.executors) {
    assert.ok(e.per_s > 0 && e.node_cpu_ms_per_candidate > 0, JSON.stringify(e));
    assert.ok(e.redis_cpu_ms_per_candidate >= 0 && e.sandbox_idle_ms_per_candidate >= 0, JSON.stringify(e));
  }
  // Bad flags are usage errors (2); an excluded id the dataset lacks is named (1).
  const errors: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (s: string) => (errors.push(String(s)), true);
  try {
    assert.equal(await benchSandboxCommand(["--prefetch", "1,x"], () => {}), 2);
    assert.equal(await benchSandboxCommand(["--rounds", "0"], () => {}), 2);
    assert.equal(await benchSandboxCommand(["--batch", "0"], () => {}), 2);
    assert.equal(await benchSandboxCommand(["--dataset", file, "--exclude-tasks", "no-such-task"], () => {}), 1);
  } finally {
    process.stderr.write = write;
  }
  assert.match(errors.join(""), /--prefetch: expected integers >= 0 separated by commas, got "x"/);
  assert.match(errors.join(""), /--rounds must be a positive integer/);
  assert.match(errors.join(""), /--batch: expected integers in 1\.\.64 separated by commas, got "0"/);
  assert.match(errors.join(""), /--exclude-tasks: no task "no-such-task" in the dataset/);
});
