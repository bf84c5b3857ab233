// WeightPusher against real weight sinks (gRPC UpdateWeights over loopback, the tcp-v1 data
// connection) registered in a real Redis: the data connection is kept between pushes and the
// next version goes on it without the worker connecting back; the worker list of the previous
// lookup is pushed to at once while this push's lookup runs beside it, so a worker that
// registered since gets the version too and one that deregistered is not reported as failed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, createRedis, startLocalRedis, weightsChecksum, type HostTensor } from "@rlmesh/shared";
import { startWeightSink, type WeightSink } from "../testing/weight-sink.js";
import { WeightPusher } from "./weight-pusher.js";

const logger = createLogger("weight-pusher-test", { level: "error" });

const weights = (k: number): HostTensor[] => [
  { name: "a.w", dtype: "DTYPE_FLOAT32", shape: [300, 100], data: Float32Array.from({ length: 30_000 }, (_, i) => Math.sin(i) * k) },
  { name: "b.bias", dtype: "DTYPE_FLOAT32", shape: [100], data: Float32Array.from({ length: 100 }, (_, i) => i * k) },
];

test("kept data connections and the cached worker list: new workers get the version, gone ones are not failures", { timeout: 120_000 }, async (t) => {
  const redisServer = await startLocalRedis();
  const redis = createRedis(redisServer.url, { role: "client", logger });
  const sinks: WeightSink[] = [];
  const pusher = new WeightPusher(redis, logger, undefined, { transport: "tcp" });
  t.after(async () => {
    pusher.close();
    for (const s of sinks) await s.stop(true).catch(() => undefined);
    redis.disconnect();
    await redisServer.stop();
  });
  const a = await startWeightSink({ id: "w-a", redis, logger });
  sinks.push(a);

  // First push: the list is looked up first; the worker connects back and both ends keep the connection.
  const p1 = await pusher.push({ jobId: "j", version: 1 }, weights(1));
  assert.deepEqual([p1.pushedTo, p1.pushFailed], [["w-a"], []]);
  assert.ok(pusher.lastPhases!.workers[0]!.greetedMs !== undefined, "a new data connection");
  // Second push: on the kept connection (no connecting back), to the cached list.
  const p2 = await pusher.push({ jobId: "j", version: 2 }, weights(2));
  assert.deepEqual([p2.pushedTo, p2.pushFailed], [["w-a"], []]);
  assert.equal(pusher.lastPhases!.workers[0]!.greetedMs, undefined, "the kept connection carried it");
  assert.equal(a.version(), 2);
  assert.equal(weightsChecksum(a.tensors()), weightsChecksum(weights(2)));
  assert.equal(pusher.chunkFallbacks, 0);

  // A worker that registered after the last lookup: this push's lookup (beside it) adds it.
  const b = await startWeightSink({ id: "w-b", redis, logger });
  sinks.push(b);
  const p3 = await pusher.push({ jobId: "j", version: 3 }, weights(3));
  assert.deepEqual([p3.pushedTo, p3.pushFailed], [["w-a", "w-b"], []]);
  for (const s of [a, b]) {
    assert.equal(s.version(), 3, s.id);
    assert.equal(weightsChecksum(s.tensors()), weightsChecksum(weights(3)), s.id);
  }

  // w-a stops and deregisters: still in the cached list, its push fails, but the lookup beside
  // the push no longer lists it, so it is not reported; w-b (kept connection) gets the version.
  await a.stop(true);
  const p4 = await pusher.push({ jobId: "j", version: 4 }, weights(4));
  assert.deepEqual([p4.pushedTo, p4.pushFailed], [["w-b"], []]);
  assert.equal(b.version(), 4);
  // w-b crashes (stays registered, as until its registration expires): its push fails and is reported.
  await b.stop(false);
  const p5 = await pusher.push({ jobId: "j", version: 5 }, weights(5));
  assert.deepEqual([p5.pushedTo, p5.pushFailed], [[], ["w-b"]]);

  // Without the cache, each push waits for its own lookup: the same outcome for a new worker.
  const c = await startWeightSink({ id: "w-c", redis, logger });
  sinks.push(c);
  const plain = new WeightPusher(redis, logger, undefined, { transport: "tcp", cacheWorkers: false, keepConnections: false });
  t.after(() => plain.close());
  const q = await plain.push({ jobId: "j", version: 6 }, weights(6));
  assert.deepEqual([q.pushedTo, q.pushFailed], [["w-c"], ["w-b"]]);
  const q2 = await plain.push({ jobId: "j", version: 7 }, weights(7));
  assert.ok(plain.lastPhases!.workers.find((w) => w.worker === "w-c")!.greetedMs !== undefined, "no kept connection: w-c connected back again");
  assert.equal(c.version(), 7);
  assert.deepEqual(q2.pushedTo, ["w-c"]);
});
