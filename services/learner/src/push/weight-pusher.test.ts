// WeightPusher against real weight sinks (gRPC UpdateWeights over loopback, the tcp-v1 data
// connection) registered in a real Redis: the data connection is kept between pushes and the
// next version goes on it without the worker connecting back; the worker list is kept between
// pushes (no Redis lookup per push) and looked up again when a worker registers or deregisters
// (the registry's change notice) or a push to a listed worker fails, so a new worker gets the
// version and one whose registration is gone is not reported as failed.
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

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

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

  // First push: the list is looked up; the worker connects back and both ends keep the connection.
  const p1 = await pusher.push({ jobId: "j", version: 1 }, weights(1));
  assert.deepEqual([p1.pushedTo, p1.pushFailed], [["w-a"], []]);
  assert.ok(pusher.lastPhases!.workers[0]!.greetedMs !== undefined, "a new data connection");
  await until("the registry subscription", () => pusher.watchingRegistry());
  // Second push: on the kept connection (no connecting back).
  const p2 = await pusher.push({ jobId: "j", version: 2 }, weights(2));
  assert.deepEqual([p2.pushedTo, p2.pushFailed], [["w-a"], []]);
  assert.equal(pusher.lastPhases!.workers[0]!.greetedMs, undefined, "the kept connection carried it");
  assert.equal(a.version(), 2);
  assert.equal(weightsChecksum(a.tensors()), weightsChecksum(weights(2)));
  // Third: the cached list, no Redis lookup.
  const lookups = pusher.workerLookups;
  assert.ok(pusher.workersCached());
  const p3 = await pusher.push({ jobId: "j", version: 3 }, weights(3));
  assert.deepEqual([p3.pushedTo, pusher.workerLookups], [["w-a"], lookups]);
  assert.equal(pusher.chunkFallbacks, 0);

  // A worker registers: its notice drops the cached list, the next push looks up and reaches it.
  const b = await startWeightSink({ id: "w-b", redis, logger });
  sinks.push(b);
  await until("the registration notice", () => !pusher.workersCached());
  const p4 = await pusher.push({ jobId: "j", version: 4 }, weights(4));
  assert.deepEqual([p4.pushedTo, p4.pushFailed, pusher.workerLookups], [["w-a", "w-b"], [], lookups + 1]);
  for (const s of [a, b]) {
    assert.equal(s.version(), 4, s.id);
    assert.equal(weightsChecksum(s.tensors()), weightsChecksum(weights(4)), s.id);
  }

  // w-a deregisters (its notice drops the list): not pushed to, not a failure.
  await a.stop(true);
  await until("the deregistration notice", () => !pusher.workersCached());
  const p5 = await pusher.push({ jobId: "j", version: 5 }, weights(5));
  assert.deepEqual([p5.pushedTo, p5.pushFailed], [["w-b"], []]);
  assert.equal(b.version(), 5);
  assert.ok(pusher.workersCached());

  // w-b crashes (registered until its entry expires, no notice): the cached list still has it,
  // the push fails, the list is looked up again at once and still has it: reported.
  await b.stop(false);
  const p6 = await pusher.push({ jobId: "j", version: 6 }, weights(6));
  assert.deepEqual([p6.pushedTo, p6.pushFailed], [[], ["w-b"]]);
  // Its entry expires (deleted here, no notice): the next lookup does not list it.
  await redis.del("rlmesh:workers:rollout:w-b");
  const c = await startWeightSink({ id: "w-c", redis, logger });
  sinks.push(c);
  await until("w-c's registration notice", () => !pusher.workersCached());
  const p7 = await pusher.push({ jobId: "j", version: 7 }, weights(7));
  assert.deepEqual([p7.pushedTo, p7.pushFailed], [["w-c"], []]);
  // w-c crashes and its entry expires before the next push, which uses the cached list: the push
  // to it fails, the new lookup no longer lists it, so it is not reported.
  assert.ok(pusher.workersCached());
  await c.stop(false);
  await redis.del("rlmesh:workers:rollout:w-c");
  const before = pusher.workerLookups;
  const p8 = await pusher.push({ jobId: "j", version: 8 }, weights(8));
  assert.deepEqual([p8.pushedTo, p8.pushFailed, pusher.workerLookups], [[], [], before + 1]);

  // Without the cache, each push looks the workers up; without kept connections each connects back.
  const d = await startWeightSink({ id: "w-d", redis, logger });
  sinks.push(d);
  const plain = new WeightPusher(redis, logger, undefined, { transport: "tcp", cacheWorkers: false, keepConnections: false });
  t.after(() => plain.close());
  for (const version of [9, 10]) {
    const q = await plain.push({ jobId: "j", version }, weights(version));
    assert.deepEqual([q.pushedTo, q.pushFailed], [["w-d"], []]);
    assert.ok(plain.lastPhases!.workers[0]!.greetedMs !== undefined, "no kept connection: w-d connected back");
  }
  assert.deepEqual([plain.workerLookups, plain.watchingRegistry(), d.version()], [2, false, 10]);
});
