import assert from "node:assert/strict";
import { test } from "node:test";
import { Redis } from "ioredis";
import { appendFsyncFromEnv, RedisServerError, startLocalRedis } from "./redis-server.js";

test("a private redis-server with AOF fsyncs every write by default; everysec is a choice; a bad value is named", async () => {
  assert.equal(appendFsyncFromEnv({}), "always");
  assert.equal(appendFsyncFromEnv({ RLMESH_REDIS_APPENDFSYNC: "everysec" }), "everysec");
  assert.throws(() => appendFsyncFromEnv({ RLMESH_REDIS_APPENDFSYNC: "no" }), (e: unknown) => e instanceof RedisServerError && /RLMESH_REDIS_APPENDFSYNC must be one of always, everysec, got "no"/.test(e.message));
  for (const policy of ["always", "everysec"] as const) {
    const srv = await startLocalRedis({ appendOnly: true, ...(policy === "everysec" ? { appendFsync: policy } : {}) });
    const r = new Redis(srv.url);
    try {
      assert.deepEqual(await r.config("GET", "appendfsync"), ["appendfsync", policy]);
    } finally {
      r.disconnect();
      await srv.stop();
    }
  }
});

test("with the default policy every acknowledged write survives a SIGKILL of redis-server", async () => {
  const srv = await startLocalRedis({ appendOnly: true });
  let r = new Redis(srv.url);
  try {
    // Acknowledged one by one, then the server is killed at once: nothing may be missing after restart.
    for (let i = 0; i < 200; i++) await r.rpush("acked", String(i));
    r.disconnect();
    await srv.kill();
    await srv.restart();
    r = new Redis(srv.url);
    const got = await r.lrange("acked", 0, -1);
    assert.equal(got.length, 200, `lost ${200 - got.length} acknowledged writes`);
  } finally {
    r.disconnect();
    await srv.stop();
  }
});
