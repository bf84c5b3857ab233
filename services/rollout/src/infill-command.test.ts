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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("files are taken as whole lines: the line breaks around the middle go with it", () => {
  assert.deepEqual(asLines("P.```python\ndef f(x):\n", "```\n"), { prefix: "P.```python\ndef f(x):", suffix: "\n```", tail: "\n" });
  assert.deepEqual(asLines("a", "\nb"), { prefix: "a", suffix: "\nb", tail: "" });
  assert.deepEqual(asLines("a\r\n", ""), { prefix: "a", suffix: "", tail: "" });
});
