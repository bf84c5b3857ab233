import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, type Schema } from "./config.js";

const schema = {
  url: { env: "T_URL", type: "string", default: "redis://x", doc: "" },
  port: { env: "T_PORT", type: "int", default: 1, min: 0, max: 65535, doc: "" },
  ratio: { env: "T_RATIO", type: "float", default: 0.5, min: 0, max: 1, doc: "" },
  on: { env: "T_ON", type: "bool", default: false, doc: "" },
  mode: { env: "T_MODE", type: "enum", values: ["a", "b"] as const, default: "a", doc: "" },
} satisfies Schema;

test("defaults apply and values parse to their types", () => {
  assert.deepEqual(loadConfig(schema, {}), { url: "redis://x", port: 1, ratio: 0.5, on: false, mode: "a" });
  assert.deepEqual(loadConfig(schema, { T_PORT: "8080", T_RATIO: "0.25", T_ON: "yes", T_MODE: "b" }), {
    url: "redis://x",
    port: 8080,
    ratio: 0.25,
    on: true,
    mode: "b",
  });
});

test("a bad value throws ConfigError naming the variable and what was expected", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ T_PORT: "80x" }, /T_PORT: expected an integer, got "80x"/],
    [{ T_PORT: "70000" }, /T_PORT: expected an integer <= 65535, got 70000/],
    [{ T_RATIO: "-1" }, /T_RATIO: expected a number >= 0/],
    [{ T_ON: "maybe" }, /T_ON: expected a boolean/],
    [{ T_MODE: "c" }, /T_MODE: expected one of a, b, got "c"/],
  ];
  for (const [env, re] of bad) {
    assert.throws(
      () => loadConfig(schema, env),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
    );
  }
});

test("required keys without a default must be set", () => {
  const s = { secret: { env: "T_SECRET", type: "string", doc: "" } } satisfies Schema;
  assert.throws(() => loadConfig(s, {}), /T_SECRET: is required but not set/);
});

test("a config file fills keys the environment does not set; the environment wins", () => {
  const dir = mkdtempSync(join(tmpdir(), "cfg-"));
  const f = join(dir, "c.json");
  writeFileSync(f, JSON.stringify({ T_PORT: 9000, T_MODE: "b" }));
  assert.deepEqual(loadConfig(schema, { RLMESH_CONFIG_FILE: f, T_MODE: "a" }).port, 9000);
  assert.equal(loadConfig(schema, { RLMESH_CONFIG_FILE: f, T_MODE: "a" }).mode, "a");
  writeFileSync(f, "{not json");
  assert.throws(() => loadConfig(schema, { RLMESH_CONFIG_FILE: f }), /RLMESH_CONFIG_FILE: cannot read/);
});
