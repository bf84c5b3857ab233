import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { UsageError } from "./args.js";
import { readSpecFile } from "./job-commands.js";

const dir = mkdtempSync(join(tmpdir(), "rlmesh-spec-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const fails = (path: string, re: RegExp) =>
  assert.throws(() => readSpecFile(path), (e: unknown) => e instanceof UsageError && re.test(e.message), path);

test("submit's spec file: a typo, a wrong type or broken JSON is an error naming the file and the field", () => {
  const typo = file("typo.json", JSON.stringify({ model_dir: "m", setps: 5 }));
  fails(typo, new RegExp(`^${typo}: spec\\.setps: unknown field \\(did you mean steps\\?\\)`));
  const five = file("five.json", JSON.stringify({ steps: "five" }));
  fails(five, /five\.json: spec\.steps: expected an integer/);
  const frac = file("frac.json", JSON.stringify({ steps: 2.5 }));
  fails(frac, /frac\.json: spec\.steps: expected an integer.*2\.5/);
  const decodng = file("decodng.json", JSON.stringify({ decodng: { temperature: 1 } }));
  fails(decodng, /decodng\.json: spec\.decodng: unknown field \(did you mean decoding\?\)/);
  const broken = file("broken.json", "{ steps: 5 ");
  fails(broken, /broken\.json: not valid JSON/);
  mkdirSync(join(dir, "a-dir.json"));
  fails(join(dir, "a-dir.json"), /a-dir\.json: cannot read the spec/);
  fails(join(dir, "missing.json"), /missing\.json: cannot read the spec/);
});

test("submit's spec file: a good spec comes back in camelCase with its values as written", () => {
  const good = file("good.json", JSON.stringify({ model_dir: "m", steps: 0, group_size: 8, decoding: { top_p: 0.9 } }));
  assert.deepEqual(readSpecFile(good), { modelDir: "m", steps: 0, groupSize: 8, decoding: { topP: 0.9 } });
});

test("submit's spec file: lr_schedule is read with its fields; a typo or a wrong type in it is named", () => {
  const lr = file("lr.json", JSON.stringify({ model_dir: "m", lr_schedule: { decay: "cosine", decay_start: 0.5, min_ratio: 0.1 } }));
  assert.deepEqual(readSpecFile(lr), { modelDir: "m", lrSchedule: { decay: "cosine", decayStart: 0.5, minRatio: 0.1 } });
  const typo = file("lr-typo.json", JSON.stringify({ lr_schedule: { decay: "cosine", min_ration: 0.1 } }));
  fails(typo, /lr-typo\.json: spec\.lr_schedule\.min_ration: unknown field \(did you mean min_ratio\?\)/);
  const type = file("lr-type.json", JSON.stringify({ lr_schedule: { decay_start: "half" } }));
  fails(type, /lr-type\.json: spec\.lr_schedule\.decay_start: expected a number/);
});
