import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";

const BIN = fileURLToPath(new URL("../bin/rlmesh.js", import.meta.url));
const root = await mkdtemp(join(tmpdir(), "rlmesh-cli-import-"));
after(() => rm(root, { recursive: true, force: true }));

function rlmesh(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    ),
  );
}

test("rlmesh import-hf: a Dream checkpoint becomes a model directory (--json summary); a bad one exits 1 naming file and key; bad flags exit 2", async () => {
  const src = join(root, "dream");
  await writeHfFixture({ modelType: "Dream", dir: src, sharded: true, dtype: "BF16", editTokens: true });
  const out = join(root, "dream-out");
  const ok = await rlmesh(["import-hf", src, "--out", out, "--name", "dream-tiny", "--json"]);
  assert.equal(ok.code, 0, ok.stderr);
  const summary = JSON.parse(ok.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
  assert.equal(summary["model_type"], "Dream");
  assert.equal(summary["name"], "dream-tiny");
  assert.equal(summary["shifted_logits"], true);
  assert.deepEqual([summary["mask_id"], summary["expand_id"], summary["delete_id"]], [0, 565, 566]);
  assert.match(ok.stderr, /import-hf: tensor 27\/27/, "progress lines go to stderr with --json");
  assert.deepEqual((await readdir(out)).sort(), ["manifest.json", "model.onnx", "tokenizer.json"]);
  assert.equal((JSON.parse(await readFile(join(out, "manifest.json"), "utf8")) as { name: string }).name, "dream-tiny");

  const bad = await rlmesh(["import-hf", src, "--out", join(root, "bad-out"), "--mask-id", "600"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^rlmesh import-hf: --mask-id 600: must be an integer in \[0, 592\) \(config\.json vocab_size\)/);
  assert.equal(await readdir(join(root, "bad-out")).catch(() => null), null, "nothing at --out");

  const busy = await rlmesh(["import-hf", src, "--out", out]);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /--out .*dream-out: exists and is not empty/);

  const usage = await rlmesh(["import-hf", src]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--out DIR is required/);
  const half = await rlmesh(["import-hf", src, "--out", join(root, "dream-f16"), "--dtype", "float16", "--json"]);
  assert.equal(half.code, 0, half.stderr);
  const halfSummary = JSON.parse(half.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
  assert.equal(halfSummary["weight_dtype"], "float16");
  assert.equal(Number(halfSummary["weight_bytes"]) * 2, Number(summary["weight_bytes"]));
  assert.equal((JSON.parse(await readFile(join(root, "dream-f16", "manifest.json"), "utf8")) as { weight_dtype?: string }).weight_dtype, "float16");
  const dtype = await rlmesh(["import-hf", src, "--out", join(root, "x"), "--dtype", "int8"]);
  assert.equal(dtype.code, 2);
  assert.match(dtype.stderr, /--dtype must be float32 or float16, got int8/);
});

test("rlmesh bench import-hf --size tiny --dtype float16 --session-rss --json: the import's numbers and what an onnxruntime session of it holds", async () => {
  const r = await rlmesh(["bench", "import-hf", "--size", "tiny", "--dtype", "float16", "--session-rss", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as { dtype: string; parameters: number; session: Record<string, number> };
  assert.equal(j.dtype, "float16");
  assert.ok(j.parameters > 0);
  for (const k of ["rss_after_create_mb", "rss_after_forward_mb", "peak_rss_mb", "create_s", "forward_s"]) assert.ok(j.session[k]! > 0, `${k} ${j.session[k]}`);
  const bad = await rlmesh(["bench", "import-hf", "--size", "tiny", "--dtype", "bf16"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--dtype must be float32 or float16, got bf16/);
});
