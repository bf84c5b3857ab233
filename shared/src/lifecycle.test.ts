import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";

/** Runs a process whose graceful stop never finishes, sends SIGTERM and returns how it ended. */
async function stopHanging(hardLimitMs: number): Promise<{ code: number | null; ms: number; out: string }> {
  const lifecycle = new URL("./lifecycle.js", import.meta.url).href;
  const logger = new URL("./logger.js", import.meta.url).href;
  const src = `
    const { onShutdown } = await import(${JSON.stringify(lifecycle)});
    const { createLogger } = await import(${JSON.stringify(logger)});
    onShutdown(createLogger("t"), () => new Promise(() => {}), ${hardLimitMs});
    console.log("ready");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", src], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((r) => {
    const poll = setInterval(() => out.includes("ready") && (clearInterval(poll), r()), 20);
  });
  const t0 = Date.now();
  child.kill("SIGTERM");
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { code, ms: Date.now() - t0, out };
}

test("a graceful stop that cannot finish (Redis down) exits after the hard limit, saying so", { timeout: 20_000 }, async () => {
  const r = await stopHanging(300);
  assert.equal(r.code, 1, r.out);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  assert.match(r.out, /graceful shutdown did not finish in time/);
});
