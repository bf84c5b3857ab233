// The worker registry rides out a Redis outage: a refresh never rejects (a rejected refresh after a
// weight swap used to crash the rollout worker about 45 s into an outage), and close() does not
// hang a shutdown while Redis is down.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Logger } from "./logger.js";
import { createRedis } from "./redis.js";
import { startLocalRedis } from "./redis-server.js";
import { listWorkers, registerWorker, REGISTRY_CLOSE_TIMEOUT_MS, workersChangedChannel } from "./registry.js";

test("with Redis down, refresh resolves (the heartbeat retries) and close returns within its bound", { timeout: 60_000 }, async () => {
  const server = await startLocalRedis();
  const redis = createRedis(server.url, { role: "client" });
  try {
    const warnings: string[] = [];
    const logger = { warn: (msg: string) => warnings.push(msg) } as unknown as Logger;
    const reg = await registerWorker(redis, "test-kind", { id: "w1", address: "127.0.0.1:1", meta: { v: 0 } }, { ttlMs: 30_000, logger });
    assert.equal((await listWorkers(redis, "test-kind"))[0]?.meta?.v, 0);
    await server.stop();
    const t0 = Date.now();
    await reg.refresh({ v: 1 }); // would reject after ioredis' retries without the guard
    assert.ok(warnings.some((w) => /registry refresh failed/.test(w)), warnings.join(" | "));
    const t1 = Date.now();
    await reg.close();
    assert.ok(Date.now() - t1 < REGISTRY_CLOSE_TIMEOUT_MS + 1000, `close took ${Date.now() - t1} ms`);
    assert.ok(t1 - t0 < 30_000);
  } finally {
    redis.disconnect();
    await server.stop().catch(() => undefined);
  }
});

test("registering and deregistering announce the worker's id on the kind's change channel", { timeout: 60_000 }, async () => {
  const server = await startLocalRedis();
  const redis = createRedis(server.url, { role: "client" });
  const sub = redis.duplicate();
  try {
    const heard: string[] = [];
    sub.on("message", (channel: string, id: string) => heard.push(`${channel} ${id}`));
    await sub.subscribe(workersChangedChannel("test-kind"));
    const reg = await registerWorker(redis, "test-kind", { id: "w1", address: "127.0.0.1:1" }, { ttlMs: 30_000 });
    await reg.refresh({ v: 1 }); // a refresh is no change of the worker list
    await reg.close();
    const deadline = Date.now() + 5000;
    while (heard.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(heard, ["rlmesh:workers-changed:test-kind w1", "rlmesh:workers-changed:test-kind w1"]);
    assert.deepEqual(await listWorkers(redis, "test-kind"), []);
  } finally {
    sub.disconnect();
    redis.disconnect();
    await server.stop();
  }
});
