import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokenizer } from "../tokenizer/load-tokenizer.js";
import { runGenTasks } from "./gen-tasks-cli.js";

test("gen-tasks writes the three splits and a tokenizer, and prints a JSON summary", async () => {
  const dir = await mkdtemp(join(tmpdir(), "rlmesh-gen-"));
  try {
    const lines: string[] = [];
    const tokFile = join(dir, "tok", "tokenizer.json");
    await runGenTasks(["--out", dir, "--seed", "cli", "--train-size", "50", "--test-size", "10", "--tokenizer", tokFile, "--json"], (l) =>
      lines.push(l),
    );
    const summary = JSON.parse(lines.at(-1) ?? "") as { rows: Record<string, number>; tokenizer: { vocab_size: number } };
    assert.deepEqual(summary.rows, { train: 50, "test-instances": 10, "test-compositional": 10 });
    for (const [split, rows] of Object.entries(summary.rows)) {
      const text = await readFile(join(dir, `${split}.jsonl`), "utf8");
      assert.equal(text.trim().split("\n").length, rows, split);
    }
    const tok = await loadTokenizer(tokFile, { requireSpecial: ["mask", "pad", "eos"] });
    assert.equal(tok.vocabSize, summary.tokenizer.vocab_size);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("gen-tasks rejects a bad size with the option's name", async () => {
  await assert.rejects(
    runGenTasks(["--out", "/nonexistent-never-written", "--train-size", "many"], () => {}),
    /--train-size must be a non-negative integer/,
  );
});
