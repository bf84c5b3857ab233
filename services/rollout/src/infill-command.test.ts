import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { asLines, infillCommand, InfillUsageError } from "./infill-command.js";

const MODEL = join(REPO_ROOT, "models", "tiny-coder");

test("rlmesh infill prints prefix + middle + suffix with the shipped model (fixed length on a model without expand)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-infill-cli-"));
  try {
    const prefix = "Write a function f(x) that returns x plus 3.```python\ndef f(x):";
    const suffix = "\n```";
    writeFileSync(join(dir, "a.txt"), prefix);
    writeFileSync(join(dir, "b.txt"), suffix);
    const args = ["--model", MODEL, "--prefix-file", join(dir, "a.txt"), "--suffix-file", join(dir, "b.txt"), "--initial-length", "6"];
    const lines: string[] = [];
    assert.equal(await infillCommand([...args, "--json"], (l) => lines.push(l)), 0);
    const out = JSON.parse(lines[0]!) as { program: string; middle: string; length: number; nfe: number; variable: boolean };
    assert.equal(out.program, prefix + out.middle + suffix);
    assert.equal(out.variable, false);
    assert.ok(out.length >= 1 && out.length <= 6);
    assert.equal(out.nfe, 6, "fixed length, one token per step");
    const plain: string[] = [];
    await infillCommand(args, (l) => plain.push(l));
    assert.deepEqual(plain, [out.program], "the same greedy fill, printed as the program");
    await assert.rejects(infillCommand([...args, "--max-length", "4"]), (e: unknown) => e instanceof InfillUsageError && /--max-length/.test(e.message));
    await assert.rejects(infillCommand(["--model", MODEL, "--prefix-file", join(dir, "a.txt")]), /--suffix-file is required/);
    // The length cuts are for variable length: this model is fixed-only.
    await assert.rejects(infillCommand([...args, "--eos-cut", "0.2"]), (e: unknown) => e instanceof InfillUsageError && /^--eos-cut: .*variable-length/.test(e.message));
    await assert.rejects(infillCommand([...args, "--length-search", "2"]), (e: unknown) => e instanceof InfillUsageError && /^--length-search: .*variable-length/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("rlmesh infill --length-search on the infilling model: the candidates compared are reported and cost forwards", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-infill-cli-"));
  try {
    writeFileSync(join(dir, "a.txt"), "Write a function f(x) that returns x plus 3.```python\ndef f(x):\n");
    writeFileSync(join(dir, "b.txt"), "```\n");
    const args = ["--model", join(REPO_ROOT, "models", "tiny-coder-infill"), "--prefix-file", join(dir, "a.txt"), "--suffix-file", join(dir, "b.txt"), "--json"];
    type Out = { program: string; middle: string; length: number; nfe: number; variable: boolean; length_search?: { candidates: number; screened_out: number; variable_length: number } };
    const run = async (extra: string[]): Promise<Out> => {
      const lines: string[] = [];
      assert.equal(await infillCommand([...args, ...extra], (l) => lines.push(l)), 0);
      return JSON.parse(lines[0]!) as Out;
    };
    const off = await run(["--length-search", "0"]);
    assert.equal(off.length_search, undefined);
    const on = await run(["--length-search", "2"]);
    assert.equal(on.variable, true);
    const ls = on.length_search!;
    // The variable decode's own middle and up to 5 fixed lengths (some may decode to the same middle).
    assert.ok(ls.candidates >= 1 && ls.candidates <= 6, JSON.stringify(ls));
    assert.equal(ls.variable_length, off.length, "the same expand/delete decode before the search");
    // A fixed decode at length L gives at most L tokens (an EOS it writes ends the middle early).
    assert.ok(on.length <= ls.variable_length + 2, "no candidate is longer than the longest length searched");
    assert.ok(on.nfe > off.nfe, `${on.nfe} forwards with the search vs ${off.nfe} without`);
    await assert.rejects(run(["--length-search", "17"]), /--length-search: .*\[0, 16\]/);
    await assert.rejects(run(["--syntax-check", "rust"]), /--syntax-check: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("files are taken as whole lines: the line breaks around the middle go with it", () => {
  assert.deepEqual(asLines("P.```python\ndef f(x):\n", "```\n"), { prefix: "P.```python\ndef f(x):", suffix: "\n```", tail: "\n" });
  assert.deepEqual(asLines("a", "\nb"), { prefix: "a", suffix: "\nb", tail: "" });
  assert.deepEqual(asLines("a\r\n", ""), { prefix: "a", suffix: "", tail: "" });
});
