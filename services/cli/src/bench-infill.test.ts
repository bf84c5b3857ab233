import { test } from "node:test";
import assert from "node:assert/strict";
import { infillTarget, modeLengths, type ModeResult } from "./bench-infill.js";

const at = (pass: number): ModeResult => ({
  n: 100,
  passed: Math.round(pass * 100),
  pass_at_1: pass,
  mean_length_error: 0,
  mean_length: 0,
  exact_match: 0,
  nfe_per_token: 1,
  decode_seconds: 0,
});

test("each mode's starting masks: oracle = true length, ½ (at least 1) and 2× fixed, variable from 4 and 32 up to 64", () => {
  assert.deepEqual(modeLengths("oracle", 13), { variable: false, initialLength: 13, maxLength: 13 });
  assert.deepEqual(modeLengths("fixed_short", 13), { variable: false, initialLength: 7, maxLength: 7 });
  assert.deepEqual(modeLengths("fixed_short", 1), { variable: false, initialLength: 1, maxLength: 1 });
  assert.deepEqual(modeLengths("fixed_long", 13), { variable: false, initialLength: 26, maxLength: 26 });
  assert.deepEqual(modeLengths("variable_from_4", 13), { variable: true, initialLength: 4, maxLength: 64 });
  assert.deepEqual(modeLengths("variable_from_32", 13), { variable: true, initialLength: 32, maxLength: 64 });
  // The diagnostic mode starts variable length at the true length.
  assert.deepEqual(modeLengths("variable_from_oracle", 13), { variable: true, initialLength: 13, maxLength: 64 });
  assert.deepEqual(modeLengths("variable_from_oracle", 70), { variable: true, initialLength: 70, maxLength: 70 });
});

test("the target: best variable within 2 points of oracle and >= 30 % relative above the worse fixed mode", () => {
  const met = infillTarget({ oracle: at(0.5), fixed_short: at(0.2), fixed_long: at(0.3), variable_from_4: at(0.45), variable_from_32: at(0.49) });
  assert.equal(met.met, true);
  assert.equal(met.variable_best, 0.49);
  assert.equal(met.worse_fixed, 0.2);
  assert.ok(Math.abs(met.relative_gain_over_worse_fixed! - 1.45) < 1e-9);
  const far = infillTarget({ oracle: at(0.5), fixed_short: at(0.2), fixed_long: at(0.3), variable_from_4: at(0.47) });
  assert.equal(far.within_2_points_of_oracle, false);
  assert.equal(far.met, false);
  const flat = infillTarget({ oracle: at(0.5), fixed_short: at(0.45), fixed_long: at(0.4), variable_from_4: at(0.5) });
  assert.equal(flat.within_2_points_of_oracle, true);
  assert.equal(flat.met, false, "25 % above the worse fixed mode is not enough");
  assert.equal(infillTarget({ oracle: at(0.5), fixed_short: at(0.2) }).met, null, "not measurable without a variable mode");
});
