import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { loadModel } from "@rlmesh/shared/model/index";

import { parseTrainBaseArgs, trainBase } from "./train-base.js";
import { REPO_ROOT as repoRoot } from "@rlmesh/shared/repo-paths";

const tokenizerFile = join(repoRoot, "models/tiny-coder/tokenizer.json");
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const rows = [
  {
    prompt: "Write a function f(x) that adds 3 to x, and returns the result.",
    reference: "```python\ndef f(x):\n    return x + 3\n```",
    tests: { kind: "assert", tests: ["assert f(1) == 4", "assert f(0) == 3"] },
  },
  {
    prompt: "Write a function f(x) that doubles x, and returns the result.",
    reference: "```python\ndef f(x):\n    return x * 2\n```",
    tests: { kind: "assert", tests: ["assert f(2) == 4"] },
  },
  {
    prompt: "Write a program that reads an integer n and prints n + 1.",
    reference: "```python\nn = int(input())\nprint(n + 1)\n```",
    tests: { kind: "stdio", cases: [{ input: "1\n", output: "2\n" }] },
  },
];

async function dataset(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "rlmesh-train-base-"));
  dirs.push(dir);
  const jsonl = rows.map((r, i) => JSON.stringify({ task_id: `t${i}`, ...r })).join("\n") + "\n";
  for (const split of ["train", "test-instances", "test-compositional"]) await writeFile(join(dir, `${split}.jsonl`), jsonl);
  return dir;
}

test("train-base (ci config) runs end to end, reproducibly, and writes a model directory that loads", async () => {
  const data = await dataset();
  const run = async (out: string) => {
    const lines: string[] = [];
    const args = {
      ...parseTrainBaseArgs(["--config", "ci", "--steps", "4", "--seed", "7", "--eval-limit", "2"]),
      data,
      out,
      tokenizer: tokenizerFile,
    };
    const r = await trainBase(args, (l) => lines.push(l));
    return { r, lines };
  };
  const outA = join(data, "a");
  const outB = join(data, "b");
  const a = await run(outA);
  const b = await run(outB);
  assert.equal(a.r.steps, 4);
  assert.ok(
    a.lines.some((l) => /^step 4\/4 loss [\d.]+ .* elapsed .* eta /.test(l)),
    a.lines.join("\n"),
  );
  assert.ok(a.lines.some((l) => /trained 4 steps in/.test(l)));
  assert.ok(a.lines.some((l) => /eval test-instances: pass@1/.test(l)));
  assert.equal(a.r.finalLoss, b.r.finalLoss, "same seed, same losses");
  const model = await loadModel(outA);
  assert.equal(model.manifest.training?.["steps"], 4);
  assert.deepEqual(model.modelBytes, (await loadModel(outB)).modelBytes, "same seed, same weights");
});

test("train-base --train-size trains on a generated split, and --number-weight is recorded with it", async () => {
  const data = await dataset();
  const lines: string[] = [];
  const args = {
    ...parseTrainBaseArgs(["--config", "ci", "--steps", "2", "--eval-limit", "0", "--train-size", "60", "--number-weight", "4"]),
    data,
    out: join(data, "gen"),
    tokenizer: tokenizerFile,
  };
  const r = await trainBase(args, (l) => lines.push(l));
  assert.ok(lines.some((l) => /\d+ examples \(a generated toy train split of 60 rows\)/.test(l)), lines.join("\n"));
  assert.equal(r.manifest.training?.["train_size"], 60);
  assert.equal(r.manifest.training?.["number_weight"], 4);
  assert.throws(() => parseTrainBaseArgs(["--train-size", "0"]), /--train-size must be a number ≥ 1/);
});

test("train-base arguments are validated with the flag named", () => {
  assert.throws(() => parseTrainBaseArgs(["--config", "huge"]), /--config must be tiny or ci/);
  assert.throws(() => parseTrainBaseArgs(["--minutes", "-1"]), /--minutes must be a number/);
  assert.throws(() => parseTrainBaseArgs(["--bogus"]), /unknown flag --bogus/);
  assert.deepEqual(parseTrainBaseArgs(["--seed", "3", "--out", "x"]).seed, 3);
  assert.deepEqual(parseTrainBaseArgs([]).lossWeighting, { kind: "inv_t" });
  assert.deepEqual(parseTrainBaseArgs(["--loss-weight", "cart"]).lossWeighting, { kind: "cart", p: 0.1 });
  assert.deepEqual(parseTrainBaseArgs(["--loss-weight", "cart", "--cart-p", "0.5"]).lossWeighting, { kind: "cart", p: 0.5 });
  assert.throws(() => parseTrainBaseArgs(["--loss-weight", "linear"]), /--loss-weight must be one of inv_t, cart, got "linear"/);
  assert.throws(() => parseTrainBaseArgs(["--loss-weight", "cart", "--cart-p", "1"]), /--cart-p must be in \(0, 1\), got 1/);
  assert.throws(() => parseTrainBaseArgs(["--loss-weight", "cart", "--cart-p", "x"]), /--cart-p must be a number in \(0, 1\), got "x"/);
  assert.throws(() => parseTrainBaseArgs(["--cart-p", "0.1"]), /--cart-p applies only to loss_weight cart/);
  assert.throws(() => parseTrainBaseArgs(["--recipe", "dreamon", "--loss-weight", "cart"]), /--loss-weight cart applies to the mdlm recipe/);
});

test("train-base --loss-weight cart trains from the same draws to different weights, and records the weighting", async () => {
  const data = await dataset();
  const run = async (extra: string[], out: string) =>
    trainBase(
      { ...parseTrainBaseArgs(["--config", "ci", "--steps", "2", "--seed", "5", "--eval-limit", "0", ...extra]), data, out, tokenizer: tokenizerFile },
      () => undefined,
    );
  const inv = await run([], join(data, "inv"));
  const cart = await run(["--loss-weight", "cart", "--cart-p", "0.2"], join(data, "cart"));
  assert.equal(cart.steps, 2);
  assert.ok(Number.isFinite(cart.finalLoss) && cart.finalLoss > 0, `loss ${cart.finalLoss}`);
  assert.notEqual(cart.finalLoss, inv.finalLoss, "CART weights change the loss of the same batches");
  assert.equal(cart.manifest.training?.["loss_weight"], "cart");
  assert.equal(cart.manifest.training?.["cart_p"], 0.2);
  assert.equal(inv.manifest.training?.["loss_weight"], "inv_t");
  assert.notDeepEqual((await loadModel(join(data, "cart"))).modelBytes, (await loadModel(join(data, "inv"))).modelBytes);
});
