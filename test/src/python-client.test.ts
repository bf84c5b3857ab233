// The Python client (clients/python, package rlmesh_client): its committed stubs are what
// gen_stubs.sh makes from proto/ today, its spec conversion names fields, and against a real
// local mesh (Redis, learner, rollout, executor, api as processes) it runs the README's job at
// CI size to SUCCEEDED with examples/run_job.py, cancels another job mid-run, and gets
// INVALID_ARGUMENT naming the field for a bad spec.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { startLocalMesh, type LocalMesh } from "@rlmesh/cli/local-mesh";
import { DEFAULT_MODEL_DIR, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { lastJsonLine, pythonWithGrpc, runPython } from "./python-helpers.js";

const CLIENT_DIR = join(REPO_ROOT, "clients", "python");

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      if (name === "__pycache__") continue;
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe("Python client", () => {
  test("the committed stubs are current: gen_stubs.sh regenerates them byte for byte", () => {
    const fresh = join(mkdtempSync(join(tmpdir(), "rlmesh-py-stubs-")), "_gen");
    execFileSync("bash", [join(CLIENT_DIR, "gen_stubs.sh"), fresh], { stdio: "pipe" });
    const committed = join(CLIENT_DIR, "rlmesh_client", "_gen");
    assert.deepEqual(listFiles(committed), listFiles(fresh), "the same files (run clients/python/gen_stubs.sh)");
    for (const f of listFiles(fresh)) {
      assert.ok(
        readFileSync(join(committed, f)).equals(readFileSync(join(fresh, f))),
        `${f} is stale: run clients/python/gen_stubs.sh and commit`,
      );
    }
  });

  test("specs convert from the JSON shape; unknown fields and wrong types name the field", async () => {
    const run = await runPython(["test/python/client_checks.py", "unit"]);
    assert.equal(run.code, 0, run.stderr);
    const out = lastJsonLine(run) as {
      steps_set: boolean;
      group_size_set: boolean;
      temperature_set: boolean;
      errors: Record<string, { code: string; field: string } | null>;
      field_of: (string | null)[];
    };
    assert.equal(out.steps_set, true, "an explicit 0 is set (proto3 optional)");
    assert.equal(out.group_size_set, false);
    assert.equal(out.temperature_set, true);
    assert.deepEqual(Object.fromEntries(Object.entries(out.errors).map(([k, e]) => [k, e && `${e.code} ${e.field}`])), {
      unknown: "INVALID_ARGUMENT spec.group_sise",
      nested_unknown: "INVALID_ARGUMENT spec.dataset.pth",
      wrong_type: "INVALID_ARGUMENT spec.group_size",
      nested_type: "INVALID_ARGUMENT spec.decoding.temperature",
      not_object: "INVALID_ARGUMENT spec.dataset",
    });
    assert.deepEqual(out.field_of, ["spec.group_size", "spec.extra_eval_datasets[1].path", null]);
  });

  describe("against a real local mesh", { timeout: 900_000 }, () => {
    let mesh: LocalMesh;
    const dataset = join(REPO_ROOT, "datasets", "toy", "train.jsonl");
    const evalDataset = join(REPO_ROOT, "datasets", "toy", "test-instances.jsonl");
    before(async () => {
      pythonWithGrpc();
      mesh = await startLocalMesh({
        rollouts: 1,
        executors: 1,
        modelDir: DEFAULT_MODEL_DIR,
        fixedPorts: false,
        stateDir: mkdtempSync(join(tmpdir(), "rlmesh-py-mesh-")),
      });
    });
    after(async () => {
      await mesh?.stop();
    });

    test("examples/run_job.py runs the README's job (CI-sized) to SUCCEEDED and prints a step table", async () => {
      const run = await runPython(
        [
          "clients/python/examples/run_job.py",
          "--target",
          mesh.apiAddr,
          "--model-dir",
          DEFAULT_MODEL_DIR,
          "--dataset",
          dataset,
          "--eval-dataset",
          evalDataset,
          "--eval-limit",
          "4",
          "--steps",
          "2",
          "--group-size",
          "4",
          "--prompts-per-step",
          "4",
        ],
        { timeoutMs: 300_000 },
      );
      assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
      const lines = run.stdout.split("\n");
      assert.ok(
        lines.some((l) => /^\s*step\s+reward\s+pass\s+informative\s+policy\s+loss\s+s\/step$/.test(l)),
        run.stdout,
      );
      const rows = lines.filter((l) => /^\s+\d+\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{2}\s+v\d+\s+\S+\s+\d+\.\d{2}$/.test(l));
      assert.deepEqual(
        rows.map((l) => Number(l.trim().split(/\s+/)[0])),
        [1, 2],
        run.stdout,
      );
      assert.equal(lines.filter((l) => /eval at step \d+ \(eval, greedy\): pass@1 \d\.\d{3}/.test(l)).length, 2, run.stdout);
      assert.match(run.stdout, /job \S+ SUCCEEDED after 2 steps; held-out pass@1 \d\.\d{3}/);
    });

    test("a bad spec is INVALID_ARGUMENT naming the field; a job is cancelled mid-run; get, list, watch from an offset", async () => {
      const run = await runPython(["test/python/client_checks.py", "mesh", mesh.apiAddr, DEFAULT_MODEL_DIR, dataset], {
        timeoutMs: 300_000,
      });
      assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
      const out = lastJsonLine(run) as {
        bad_spec: { code: string; field: string; details: string };
        missing: { code: string };
        cancel_job_id: string;
        cancel_answer_state: string;
        cancelled_at_step: number;
        cancelled: { state: string; step: number };
        event_kinds: string[];
        event_count: number;
        tail_offsets: number[];
        cancel_again: { code: string; details: string };
        listed: string[];
        listed_cancelled: string[];
      };
      assert.equal(out.bad_spec.code, "INVALID_ARGUMENT");
      assert.equal(out.bad_spec.field, "spec.group_size");
      assert.match(out.bad_spec.details, /^spec\.group_size: /);
      assert.equal(out.missing.code, "NOT_FOUND");
      assert.equal(out.cancelled_at_step, 1);
      assert.equal(out.cancelled.state, "CANCELLED", JSON.stringify(out));
      assert.ok(out.cancelled.step < 200, `stopped early (step ${out.cancelled.step})`);
      assert.ok(out.event_kinds.includes("state") && out.event_kinds.includes("step"), out.event_kinds.join(","));
      assert.deepEqual(out.tail_offsets, [out.event_count - 2, out.event_count - 1]);
      assert.equal(out.cancel_again.code, "FAILED_PRECONDITION");
      assert.match(out.cancel_again.details, /CANCELLED/);
      assert.ok(out.listed.includes(out.cancel_job_id));
      assert.ok(out.listed_cancelled.includes(out.cancel_job_id));
    });
  });
});
