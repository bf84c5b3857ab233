// The api as a real process: gRPC JobService over loopback, health, reflection, Redis-backed job
// state and event stream, INVALID_ARGUMENT naming the field, config errors, graceful shutdown.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { checkHealth, createRedis, freePort, startLocalRedis, type JobEvent, type JobServiceClient, type LocalRedis } from "@rlmesh/shared";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { DEFAULT_MODEL_DIR } from "@rlmesh/shared/repo-paths";
import { reflectServices, startService, waitServing, type ServiceProcess } from "./helpers.js";

describe("api service", () => {
  let redis: LocalRedis;
  let api: ServiceProcess;
  let addr: string;
  let client: JobServiceClient;
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-api-test-"));
  const model = DEFAULT_MODEL_DIR;
  const dataset = join(dir, "tasks.jsonl");
  const row = { task_id: "t1", prompt: "Write f(x) returning x+1.", tests: { kind: "assert", tests: ["assert f(1) == 2"] } };
  writeFileSync(dataset, JSON.stringify(row) + "\n");
  const badDataset = join(dir, "bad.jsonl");
  writeFileSync(
    badDataset,
    JSON.stringify(row) + "\n" + JSON.stringify({ ...row, task_id: "t2", tests: { kind: "assert", tests: [] } }) + "\n",
  );

  before(async () => {
    redis = await startLocalRedis();
    const port = await freePort();
    addr = `127.0.0.1:${port}`;
    api = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(addr, 20_000, api);
    client = jobClient(addr);
  });
  after(async () => {
    client?.close();
    await api?.stop("SIGKILL");
    await redis?.stop();
  });

  test("health reports SERVING for the server and JobService", async () => {
    assert.equal(await checkHealth(addr), "SERVING");
    assert.equal(await checkHealth(addr, "rlmesh.v1.JobService"), "SERVING");
  });

  test("reflection lists JobService and the health service", async () => {
    const names = await reflectServices(addr);
    assert.ok(names.includes("rlmesh.v1.JobService"), names.join(","));
    assert.ok(names.includes("grpc.health.v1.Health"), names.join(","));
    assert.ok(!names.includes("rlmesh.v1.RolloutService"), "only the services this server serves");
  });

  test("a bad spec gets INVALID_ARGUMENT naming the field", async () => {
    await assert.rejects(jobs.submit(client, { modelDir: model, dataset: { path: dataset }, groupSize: 1 }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^spec\.group_size: /);
      return true;
    });
    await assert.rejects(
      jobs.submit(client, { modelDir: model, dataset: { path: join(dir, "missing.jsonl") } }),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /^spec\.dataset\.path: file not found/);
        return true;
      },
    );
    // A directory that is not a model directory is refused at submit, not when the job starts.
    await assert.rejects(jobs.submit(client, { modelDir: dir, dataset: { path: dataset } }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^spec\.model_dir: .* has no manifest\.json: not a model directory/);
      return true;
    });
    await assert.rejects(jobs.submit(client, { modelDir: model, dataset: { path: badDataset } }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^spec\.dataset\.path: .*bad\.jsonl:2: field "tests\.tests": is empty/);
      return true;
    });
    await assert.rejects(jobs.get(client, "no:colons"), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^id: /);
      return true;
    });
    await assert.rejects(jobs.get(client, "job-unknown"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    // A server stream answers with a status too (not a hang).
    await assert.rejects(
      (async () => {
        for await (const _ of jobs.watch(client, "job-unknown")) void _;
      })(),
      (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && /job job-unknown not found/.test(err.details),
    );
  });

  test("spec.lr_schedule over the wire: bad values are INVALID_ARGUMENT naming the field; a cosine one is stored with its defaults", async () => {
    const base = { modelDir: model, dataset: { path: dataset }, steps: 3 };
    const refused: [object, RegExp][] = [
      [{ decay: "linear" }, /^spec\.lr_schedule\.decay: must be one of constant, cosine, got "linear"/],
      [{ decay: "cosine", decayStart: 1 }, /^spec\.lr_schedule\.decay_start: must be in \[0, 1\), got 1$/],
      [{ decay: "cosine", minRatio: 0 }, /^spec\.lr_schedule\.min_ratio: must be in \(0, 1\], got 0$/],
    ];
    for (const [lrSchedule, re] of refused) {
      await assert.rejects(jobs.submit(client, { ...base, lrSchedule }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, re);
        return true;
      });
    }
    // Unset fields of a set message arrive unset (proto3 optional) and take the defaults.
    const fields = (j: { spec?: { lrSchedule?: { decay?: string; decayStart?: number; minRatio?: number } | null } | null }) => {
      const s = j.spec?.lrSchedule;
      return { decay: s?.decay, decayStart: s?.decayStart, minRatio: s?.minRatio };
    };
    const job = await jobs.submit(client, { ...base, lrSchedule: { decay: "cosine" } });
    await jobs.cancel(client, job.id, "test over");
    assert.deepEqual(fields(job), { decay: "cosine", decayStart: 0.5, minRatio: 0.1 });
    const plain = await jobs.submit(client, base);
    await jobs.cancel(client, plain.id, "test over");
    assert.deepEqual(fields(plain), { decay: "constant", decayStart: 0.5, minRatio: 0.1 });
  });

  test("submit, get, list; WatchJob streams live events, resumes from an offset and ends with the job", async () => {
    const job = await jobs.submit(client, { name: "t", modelDir: model, dataset: { path: dataset }, steps: 3 });
    assert.equal(job.state, "JOB_STATE_QUEUED");
    assert.equal(job.spec?.groupSize, 8, "defaults filled in");
    assert.equal((await jobs.get(client, job.id)).id, job.id);
    assert.ok((await jobs.list(client)).jobs.some((j) => j.id === job.id));

    // Events appended by someone else (the coordinator) reach a watcher live.
    const r = createRedis(redis.url, { role: "client" });
    const { JobStore } = await import("@rlmesh/api/job-store");
    const store = new JobStore(r);
    const seen: JobEvent[] = [];
    const watching = (async () => {
      for await (const e of jobs.watch(client, job.id, 0)) seen.push(e);
    })();
    await new Promise((res) => setTimeout(res, 300));
    await store.appendEvent(job.id, { step: { step: 1, rewardMean: 0.5, passRate: 0.25, policyVersion: 1 } });
    await store.appendEvent(job.id, { log: { level: "info", message: "hello" } });
    await new Promise((res) => setTimeout(res, 300));
    await jobs.cancel(client, job.id, "test over");
    await watching;
    r.disconnect();

    // Offsets are dense and ordered; the coordinator's own events (it is waiting for a rollout
    // worker, since none runs here) interleave with the ones appended above.
    assert.deepEqual(
      seen.map((e) => e.offset),
      seen.map((_, i) => i),
    );
    assert.equal(seen[0]?.state?.to, "JOB_STATE_QUEUED");
    assert.ok(
      seen.some((e) => e.state?.to === "JOB_STATE_RUNNING"),
      "the coordinator started the job",
    );
    const mine = seen.filter((e) => e.step || e.log?.message === "hello");
    assert.equal(mine[0]?.step?.rewardMean, 0.5);
    assert.equal(mine[1]?.log?.message, "hello");
    const last = seen.at(-1);
    assert.equal(last?.state?.to, "JOB_STATE_CANCELLED");
    assert.equal(last?.state?.reason, "test over");
    const n = seen.length;

    const resumed: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id, 2)) resumed.push(e);
    assert.deepEqual(
      resumed.map((e) => e.offset),
      seen.slice(2).map((e) => e.offset),
    );
    assert.equal(resumed.length, n - 2);
    assert.equal((await jobs.get(client, job.id)).state, "JOB_STATE_CANCELLED");
    // Cancelling a job that has ended is FAILED_PRECONDITION naming its state, not a silent OK.
    await assert.rejects(
      jobs.cancel(client, job.id),
      (e: { code?: number; details?: string }) => e.code === 9 && /has already ended \(JOB_STATE_CANCELLED\)/.test(e.details ?? ""),
    );
  });

  test("job state survives an api restart (it lives in Redis)", async () => {
    const job = await jobs.submit(client, { modelDir: model, dataset: { path: dataset } });
    await api.stop("SIGTERM");
    const port = Number(addr.split(":")[1]);
    api = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(addr, 20_000, api);
    client.close();
    client = jobClient(addr);
    // The restarted api resumed the job (it waits for rollout workers).
    const events: JobEvent[] = [];
    for await (const e of jobs.watch(client, job.id, 0, AbortSignal.timeout(300))) events.push(e);
    assert.equal((await jobs.get(client, job.id)).state, "JOB_STATE_RUNNING", JSON.stringify(events));
    await jobs.cancel(client, job.id);
  });

  test("a watch survives an api restart: it reconnects and resumes after its last event, none lost or repeated", async () => {
    const job = await jobs.submit(client, { modelDir: model, dataset: { path: dataset } });
    const watcher = jobClient(addr);
    const seen: JobEvent[] = [];
    const retries: string[] = [];
    const watching = (async () => {
      for await (const e of jobs.watchResilient(watcher, job.id, 0, { onRetry: (m) => retries.push(m) })) seen.push(e);
    })();
    await new Promise((res) => setTimeout(res, 500));
    const before = seen.length;
    await api.stop("SIGKILL");
    // Events written while the api is down are read from Redis after the reconnect.
    const r = createRedis(redis.url, { role: "client" });
    const { JobStore } = await import("@rlmesh/api/job-store");
    await new JobStore(r).appendEvent(job.id, { log: { level: "info", message: "written while the api was down" } });
    r.disconnect();
    await new Promise((res) => setTimeout(res, 1500));
    const port = Number(addr.split(":")[1]);
    api = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(addr, 20_000, api);
    client.close();
    client = jobClient(addr);
    await jobs.cancel(client, job.id, "watch test over");
    await watching;
    watcher.close();
    assert.ok(before > 0 && retries.length > 0, `events before the restart: ${before}; retries: ${retries.join(" | ")}`);
    assert.match(retries[0] ?? "", /api unavailable .*reconnecting in .* resuming at event \d+/);
    assert.deepEqual(
      seen.map((e) => Number(e.offset)),
      seen.map((_, i) => i),
      "offsets dense from 0: nothing lost, nothing repeated",
    );
    assert.ok(seen.some((e) => e.log?.message === "written while the api was down"));
    assert.equal(seen.at(-1)?.state?.to, "JOB_STATE_CANCELLED");
  });

  test("SIGTERM shuts down gracefully: exit code 0 and the port is released", async () => {
    const port = await freePort();
    const svc = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(`127.0.0.1:${port}`, 20_000, svc);
    const code = await svc.stop("SIGTERM");
    assert.equal(code, 0, svc.output());
    assert.match(svc.output(), /"msg":"stopped"/);
    const again = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: String(port), RLMESH_API_METRICS_PORT: "0" });
    await waitServing(`127.0.0.1:${port}`, 20_000, again);
    await again.stop("SIGTERM");
  });

  test("a bad config value stops the process with a message naming the variable", async () => {
    const svc = startService("api", { REDIS_URL: redis.url, RLMESH_API_PORT: "not-a-port" });
    const code = await svc.exited;
    assert.notEqual(code, 0);
    assert.match(svc.output(), /RLMESH_API_PORT: expected an integer, got "not-a-port"/);
  });
});
