import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtempSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ephemeralPortRange, freePort, reservePort } from "./net.js";

test("freePort hands out distinct ports below the ephemeral range that a server can bind on all interfaces", async () => {
  const [low, high] = ephemeralPortRange();
  assert.ok(low > 1024 && low <= high, `range ${low}-${high}`);
  const ports = await Promise.all(Array.from({ length: 40 }, () => freePort()));
  assert.equal(new Set(ports).size, ports.length, "no port twice");
  for (const p of ports) assert.ok(p >= 1024 && p < low, `port ${p} outside [1024, ${low})`);
  // Each one really binds (0.0.0.0, as the metrics servers do).
  for (const p of ports.slice(0, 5)) {
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(p, "0.0.0.0", () => srv.close(() => resolve()));
    });
  }
});

test("a port reserved by another process is not handed out again until its reservation is stale", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ports-"));
  const before = process.env.RLMESH_PORT_DIR;
  process.env.RLMESH_PORT_DIR = dir;
  try {
    // Another process's fresh reservation blocks the port; this process's first take succeeds.
    writeFileSync(join(dir, "20001"), "999999\n");
    assert.equal(reservePort(20001), false, "a fresh reservation of another process blocks the port");
    assert.equal(reservePort(20002), true);
    assert.equal(readFileSync(join(dir, "20002"), "utf8"), `${process.pid}\n`);
    assert.equal(reservePort(20002), false, "a second draw of a reserved port is refused");
    // Two minutes later the reservation is stale and can be taken over.
    const old = (Date.now() - 130_000) / 1000;
    utimesSync(join(dir, "20001"), old, old);
    assert.equal(reservePort(20001), true, "a stale reservation is taken over");
    // freePort files what it hands out, so a second process would see it.
    const port = await freePort();
    assert.equal(readFileSync(join(dir, String(port)), "utf8"), `${process.pid}\n`);
  } finally {
    if (before === undefined) delete process.env.RLMESH_PORT_DIR;
    else process.env.RLMESH_PORT_DIR = before;
  }
});
