#!/usr/bin/env node
// The fault suite: every test that breaks a part of the mesh on purpose (SIGKILL of the executor,
// rollout worker, learner and api; a Redis restart and a 60 s outage; `docker kill` storms on the
// sandboxes; a host that starves the sandbox of CPU) on real processes, Redis, Docker and gRPC,
// run file by file with node's test runner (spec output as it goes), then a table: fault → outcome,
// with what each test measured (its diagnostics). Exit status 1 when any test failed.
//
//   npm run test:faults                    (after a build: npm run build, or tsc -b)
//   node scripts/test-faults.mjs [--only SUBSTRING]   only the files whose path contains it
//
// The same file is the node:test reporter that records each file's results for the table
// (`--test-reporter=./scripts/test-faults.mjs`): imported, it only exports the reporter.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The suite: each file, and for each of its tests (matched by name) the fault it injects and the
 * outcome it asserts. A test of a listed file that is not named here is shown only if it fails.
 */
export const FAULT_SUITE = [
  {
    file: "services/executor/dist/executor-crash.test.js",
    tests: [
      [
        /^SIGKILL mid-job/,
        "executor SIGKILL mid-candidate",
        "another executor redoes the job; the reward is recorded once (stalled recovery)",
      ],
      [/^SIGKILL with a prefetched job/, "executor SIGKILL holding a prefetched job", "both jobs redone, each recorded once"],
      [/^SIGTERM lets/, "executor SIGTERM mid-candidate", "the in-flight job finishes, exit 0, sandboxes removed"],
      [
        /^SIGTERM with a prefetched job held/,
        "executor SIGTERM holding a prefetched job",
        "the running job finishes; the held one goes back unstarted (no attempt, no stall) and is scored once",
      ],
    ],
  },
  {
    file: "services/executor/dist/executor-takeover.test.js",
    tests: [
      [
        /SIGKILLed executor's in-flight job/,
        "executor SIGKILL: takeover time on the shipped lock defaults",
        "another (standing or new) executor starts the job within 20 s; scored once",
      ],
    ],
  },
  {
    file: "services/executor/dist/reward-queue-load.test.js",
    tests: [
      [
        /executor SIGKILLed every 3 s/,
        "executor SIGKILL every 3 s + Redis SIGKILL/restart under 2 000 reward jobs",
        "every reward job completes exactly once (four sources of evidence)",
      ],
    ],
  },
  {
    file: "services/executor/dist/sandbox-starvation.test.js",
    tests: [
      [/endless loop on an idle CPU/, "no starvation (control)", "an endless loop still times out on time"],
      [
        /starved by CPU hogs/,
        "host starves the sandbox of CPU",
        "a correct candidate passes (never a timeout 0); a sleeper still times out",
      ],
    ],
  },
  {
    file: "test/dist/sandbox-kill-storm.test.js",
    tests: [
      [
        /^docker kill of the sandboxes/,
        "docker kill of sandboxes every 0.3 s (24 candidates through the api's scorer)",
        "each candidate: the clean run's reward, or none (dropped, named) — never a sandbox's 0",
      ],
    ],
  },
  {
    file: "test/dist/mesh-kill-storm.test.js",
    tests: [
      [
        /^docker kill of the executor's sandboxes/,
        "docker kill of sandboxes every 0.3 s through an RL job (local mesh, 3 steps × 4 × 8)",
        "SUCCEEDED with each step once, or FAILED naming the infrastructure-failure rate; drops named in events and counted; scored rewards = the clean run's; one reward job per candidate, completed once",
      ],
    ],
  },
  {
    file: "test/dist/mesh-supervision.test.js",
    tests: [
      [
        /^killed services come back/,
        "executor, rollout worker and api SIGKILL (no hand restart)",
        "up restarts each with backoff, the job's events say so, the job SUCCEEDS with steps 1-4 once",
      ],
      [
        /^a crash loop is given up on/,
        "executor crash loop (4 deaths)",
        "given up on, logged; a waiting step says 'waiting for an executor' every 10 s, then SUCCEEDS",
      ],
      [
        /^a killed redis-server is restarted/,
        "redis-server SIGKILL (no hand restart)",
        "restarted on its port and AOF; the job SUCCEEDS with steps 1-3 once; events say so",
      ],
    ],
  },
  {
    file: "test/dist/rl-faults.test.js",
    tests: [
      [
        /SIGKILLed executor, rollout worker and learner/,
        "executor, rollout, learner SIGKILL + Redis restart in one job",
        "SUCCEEDED, steps 1-5 once, one completed reward job per candidate, none lost or queued",
      ],
    ],
  },
  {
    file: "test/dist/learner-resume.test.js",
    tests: [
      [
        /^SIGKILL during a TrainStep/,
        "learner SIGKILL during a TrainStep",
        "after restart the same TrainStep gives the uninterrupted learner's update",
      ],
    ],
  },
  {
    file: "test/dist/api-service.test.js",
    pattern: "api restart",
    tests: [
      [/^job state survives an api restart/, "api restart", "the job's state is intact (it lives in Redis)"],
      [
        /^a watch survives an api restart/,
        "api restart under a watching client",
        "the watch reconnects and resumes; no event lost or repeated",
      ],
    ],
  },
  {
    file: "test/dist/redis-outage.test.js",
    tests: [
      [
        /60 s Redis outage/,
        "Redis down for 60 s mid-job",
        "no service crashes; SUCCEEDED with the clean run's steps and rewards; one completed reward job per candidate",
      ],
    ],
  },
];

/** node:test reporter: one JSON line per test result and per diagnostic (the table is built from them). */
export default async function* faultReporter(source) {
  for await (const e of source) {
    if (e.type === "test:pass" || e.type === "test:fail") {
      const d = e.data;
      yield `${JSON.stringify({ type: "result", ok: e.type === "test:pass", name: d.name, nesting: d.nesting, ms: d.details?.duration_ms ?? 0, error: d.details?.error ? errorText(d.details.error) : undefined, skip: Boolean(d.skip || d.todo) })}\n`;
    } else if (e.type === "test:diagnostic" && e.data.file) {
      yield `${JSON.stringify({ type: "diagnostic", nesting: e.data.nesting, message: e.data.message })}\n`;
    }
  }
}

function errorText(err) {
  const inner = err.cause ?? err;
  // An assertion's message spans lines (the diff of actual and expected): one line for the table.
  return String(inner?.message ?? inner)
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 300);
}

/** Rows of one file's results: each result with the diagnostics that followed it at its nesting. */
export function rowsOf(entry, lines) {
  const rows = [];
  const last = new Map(); // nesting -> the row its diagnostics go to
  for (const l of lines) {
    if (l.type === "result") {
      const row = { ...l, diagnostics: [] };
      rows.push(row);
      last.set(l.nesting, row);
    } else last.get(l.nesting)?.diagnostics.push(l.message);
  }
  // Listed tests, and unlisted ones that failed; a suite (describe) that failed only because a
  // test in it did ("1 subtest failed") is left out when that test is a row.
  const named = rows.map((r) => {
    const known = entry.tests.find(([re]) => re.test(r.name));
    if (!known) return { ...r, fault: null };
    // node:test reports a test that did not run (skip/todo) as ok; a listed fault test must run,
    // so such a row is a failure.
    const notRun = r.skip ? { ok: false, error: `did not run (${r.error ?? "marked skip or todo"}): a listed fault test must run` } : {};
    return { ...r, fault: known[1], asserts: known[2], ...notRun };
  });
  const testFailed = named.some((r) => !r.ok && !/^\d+ subtests? failed$/.test(r.error ?? ""));
  return named.filter((r) => r.fault !== null || (!r.ok && !r.skip && !(testFailed && /^\d+ subtests? failed$/.test(r.error ?? ""))));
}

export function runFile(entry, dir, i) {
  const out = join(dir, `${i}.jsonl`);
  const args = [
    "--test",
    "--test-concurrency=1",
    // A test that fails with a connection still open would otherwise keep its file (and the suite) running.
    "--test-force-exit",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    `--test-reporter=${join(ROOT, "scripts", "test-faults.mjs")}`,
    `--test-reporter-destination=${out}`,
    ...(entry.pattern ? [`--test-name-pattern=${entry.pattern}`] : []),
    join(ROOT, entry.file),
  ];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
  const lines = existsSync(out)
    ? readFileSync(out, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
  return { status: r.status ?? 1, seconds: (Date.now() - t0) / 1000, lines };
}

export function table(rows) {
  const cells = rows.map((r) => [
    r.fault ?? `(unlisted) ${r.name}`,
    r.ok ? `pass — ${r.asserts ?? r.name}` : `FAIL — ${r.error ?? "failed"}`,
    `${(r.ms / 1000).toFixed(1)} s`,
    r.diagnostics.join(" | ") || "—",
  ]);
  const head = ["fault", "outcome", "time", "measured (the test's diagnostics)"];
  const esc = (s) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...cells.map((c) => `| ${c.map(esc).join(" | ")} |`)].join(
    "\n",
  );
}

function main() {
  const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
  const suite = FAULT_SUITE.filter((e) => !only || e.file.includes(only));
  if (suite.length === 0) {
    console.error(`test-faults: no fault test file matches --only ${only}; files: ${FAULT_SUITE.map((e) => e.file).join(", ")}`);
    process.exit(2);
  }
  const missing = suite.filter((e) => !existsSync(join(ROOT, e.file))).map((e) => e.file);
  if (missing.length > 0) {
    console.error(`test-faults: not built: ${missing.join(", ")} (run npm run build, or node_modules/.bin/tsc -b)`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-faults-"));
  const rows = [];
  let failed = false;
  const t0 = Date.now();
  try {
    suite.forEach((entry, i) => {
      console.log(`\n== fault suite ${i + 1}/${suite.length}: ${entry.file}${entry.pattern ? ` (tests matching "${entry.pattern}")` : ""}`);
      const r = runFile(entry, dir, i);
      const fileRows = rowsOf(entry, r.lines);
      // A file that failed without a failing test (crashed, or a before() hook failed) is a row too.
      if (r.status !== 0 && !fileRows.some((x) => !x.ok))
        fileRows.push({
          fault: `(file) ${entry.file}`,
          ok: false,
          error: `exit status ${r.status}`,
          ms: r.seconds * 1000,
          diagnostics: [],
        });
      for (const [, fault, asserts] of entry.tests)
        if (!fileRows.some((x) => x.fault === fault))
          fileRows.push({ fault, asserts, ok: false, error: "did not run (not found in the file's results)", ms: 0, diagnostics: [] });
      failed ||= r.status !== 0 || fileRows.some((x) => !x.ok);
      rows.push(...fileRows);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const passed = rows.filter((r) => r.ok).length;
  console.log(`\n## Fault suite: ${passed} of ${rows.length} passed in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  console.log(table(rows));
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
