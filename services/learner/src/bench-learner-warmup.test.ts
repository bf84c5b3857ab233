// `rlmesh bench learner --first-steps N [--warmup on,off]`: its options, and one short run of both
// modes (each in its own process) on a random-weight model.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchFirstSteps, parseFirstStepsArgs } from "./bench-learner-warmup.js";
import { writeRandomModelDir } from "./testing/random-model-dir.js";

const root = await mkdtemp(join(tmpdir(), "rlmesh-bench-first-steps-test-"));
after(() => rm(root, { recursive: true, force: true }));

test("options: --first-steps is required and positive, --warmup takes distinct modes of on,off", () => {
  assert.deepEqual(parseFirstStepsArgs(["--first-steps", "10"]), { steps: 10, modes: ["on", "off"], json: false });
  assert.deepEqual(parseFirstStepsArgs(["--first-steps", "3", "--warmup", "off,on", "--json", "--model-dir", "m"]), {
    steps: 3,
    modes: ["off", "on"],
    json: true,
    modelDir: "m",
  });
  assert.throws(() => parseFirstStepsArgs(["--warmup", "on"]), /--warmup needs --first-steps N/);
  assert.throws(() => parseFirstStepsArgs(["--first-steps", "0"]), /--first-steps needs a positive integer/);
  assert.throws(() => parseFirstStepsArgs(["--first-steps", "2", "--warmup", "on,maybe"]), /--warmup needs distinct modes from on,off/);
  assert.throws(() => parseFirstStepsArgs(["--first-steps", "2", "--warmup", "on,on"]), /distinct modes/);
  assert.throws(() => parseFirstStepsArgs(["--first-steps", "2", "--steps", "3"]), /--steps is not an option of --first-steps/);
});

test("a run of both modes: the same requests, the warm-up's shapes and cost with on, none with off", { timeout: 600_000 }, async () => {
  // max_seq_len 128: the toy prompts (≤ 45 tokens) and 64-token responses fit.
  const modelDir = await writeRandomModelDir(join(root, "model"), "ci", 5, 128);
  const lines: string[] = [];
  const r = await benchFirstSteps({ steps: 2, modes: ["off", "on"], json: false, modelDir }, (l) => lines.push(l));
  assert.deepEqual(r.runs.map((x) => x.mode), ["off", "on"]);
  const [off, on] = r.runs as [(typeof r.runs)[number], (typeof r.runs)[number]];
  assert.deepEqual(on.seq_lens, off.seq_lens, "the same requests in both modes");
  assert.equal(off.step_seconds.length, 2);
  assert.equal(on.step_cpu_seconds.length, 2);
  assert.deepEqual(off.warmup_shapes, []);
  assert.equal(off.warmup_seconds, 0);
  assert.deepEqual(
    on.warmup_shapes.map((s) => s.split(":").slice(0, 2).join(":")),
    ["32x64:compiled", "32x80:compiled", "32x48:compiled", "32x96:compiled", "32x32:compiled", "32x112:compiled"],
  );
  assert.ok(on.warmup_seconds > 0 && on.warmup_cpu_seconds > 0);
  for (const l of on.seq_lens) assert.ok([32, 48, 64, 80, 96, 112].includes(l), `padded length ${l} is one the warm-up compiled`);
  assert.equal(r.first_steps_total.on, on.step_seconds[0]! + on.step_seconds[1]!);
  assert.ok(lines.some((l) => l.startsWith("  warm-up on: warm-up ")), lines.join("\n"));
});
