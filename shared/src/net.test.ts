import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { ephemeralPortRange, freePort } from "./net.js";

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
