// Reflection that tools can load: a dynamic Python client (test/python/reflect_client.py, only
// grpcio + protobuf + reflection stubs it generates with protoc) against a real api process with
// a private Redis lists the services, loads every reflected file into a DescriptorPool and calls
// JobService.ListJobs and GetJob from the reflected descriptors alone, over v1alpha and v1.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startLocalRedis, type LocalRedis } from "@rlmesh/shared";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { DEFAULT_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { startService, waitServing, type ServiceProcess } from "./helpers.js";
import { lastJsonLine, pythonWithGrpc, runPython } from "./python-helpers.js";

describe("reflection from a Python dynamic client", { timeout: 180_000 }, () => {
  let redis: LocalRedis;
  let api: ServiceProcess;
  let addr: string;
  let jobId: string;
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-reflect-test-"));
  const dataset = join(dir, "tasks.jsonl");
  writeFileSync(
    dataset,
    JSON.stringify({ task_id: "t1", prompt: "Write f(x) returning x+1.", tests: { kind: "assert", tests: ["assert f(1) == 2"] } }) + "\n",
  );

  before(async () => {
    pythonWithGrpc();
    redis = await startLocalRedis();
    const port = await freePort();
    addr = `127.0.0.1:${port}`;
    api = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(addr, 20_000, api);
    const client = jobClient(addr);
    const job = await jobs.submit(client, {
      name: "reflected",
      modelDir: DEFAULT_MODEL_DIR,
      dataset: { path: dataset },
      groupSize: 4,
      steps: 1,
    });
    client.close();
    jobId = job.id;
  });
  after(async () => {
    await api?.stop("SIGKILL");
    await redis?.stop();
  });

  for (const version of ["v1alpha", "v1"]) {
    test(`grpc.reflection.${version}: services, real files, a DescriptorPool, ListJobs and GetJob`, async () => {
      const run = await runPython(["test/python/reflect_client.py", addr, "--version", version, "--job-id", jobId]);
      assert.equal(run.code, 0, `exit ${run.code}\n${run.stderr}`);
      const out = lastJsonLine(run) as {
        services: string[];
        files: string[];
        jobs_file_answer: string[];
        pool_files: number;
        job_spec_fields: string[];
        job_spec_optional_oneofs: string[];
        state_changed_fields: string[];
        map_entry: boolean;
        health_method: string;
        unknown_symbol_error: boolean;
        unknown_file_error: boolean;
        method_symbol_file: string;
        list_jobs: { id: string; state: string; spec_keys: string[] }[];
        get_job: { id: string; spec: Record<string, unknown>; state: string };
        get_missing: { code: string; details: string };
      };
      assert.deepEqual(out.services.slice().sort(), [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "rlmesh.v1.JobService",
      ]);
      // One file per .proto, under its own name, imports resolvable by name.
      for (const f of [
        "rlmesh/v1/jobs.proto",
        "rlmesh/v1/common.proto",
        "rlmesh/v1/learner.proto",
        "rlmesh/v1/rollout.proto",
        "grpc/health/v1/health.proto",
        `grpc/reflection/${version}/reflection.proto`,
      ]) {
        assert.ok(out.files.includes(f), `${f} in ${out.files.join(", ")}`);
      }
      assert.ok(!out.files.some((f) => f.includes("rlmesh_v1")), out.files.join(", "));
      assert.equal(out.jobs_file_answer[0], "rlmesh/v1/jobs.proto");
      assert.deepEqual(out.jobs_file_answer.slice(1).sort(), [
        "rlmesh/v1/common.proto",
        "rlmesh/v1/learner.proto",
        "rlmesh/v1/rollout.proto",
      ]);
      assert.equal(out.pool_files, out.files.length);
      assert.equal(out.method_symbol_file, "rlmesh/v1/jobs.proto");
      assert.ok(out.unknown_symbol_error && out.unknown_file_error, "unknown symbol / file: NOT_FOUND on the stream");
      // The .proto's own names: snake_case fields, proto3 optional, map entries, renamed keywords.
      for (const f of ["model_dir", "group_size", "prompts_per_step", "eval_dataset", "extra_eval_datasets", "init_from"]) {
        assert.ok(out.job_spec_fields.includes(f), `JobSpec.${f} in ${out.job_spec_fields.join(",")}`);
      }
      assert.ok(!out.job_spec_fields.includes("groupSize"));
      assert.ok(out.job_spec_optional_oneofs.includes("_group_size"), "proto3 optional's synthetic oneof");
      assert.deepEqual(out.state_changed_fields, ["from_state", "to", "reason"]);
      assert.equal(out.map_entry, true, "PhaseTimings.seconds is a map with its SecondsEntry");
      assert.equal(out.health_method, "grpc.health.v1.Health.Check");
      // Calls from reflected descriptors alone.
      const listed = out.list_jobs.find((j) => j.id === jobId);
      assert.ok(listed, JSON.stringify(out.list_jobs));
      assert.ok(listed.spec_keys.includes("model_dir") && listed.spec_keys.includes("group_size"), listed.spec_keys.join(","));
      assert.equal(out.get_job.id, jobId);
      assert.equal(out.get_job.spec.name, "reflected");
      assert.equal(out.get_job.spec.group_size, 4);
      assert.match(out.get_job.state, /^JOB_STATE_/);
      assert.equal(out.get_missing.code, "NOT_FOUND");
    });
  }
});
