import assert from "node:assert/strict";
import { test } from "node:test";

import { firstNonFiniteHalf, float16ToFloat32, float32ToFloat16, FLOAT16_MAX } from "./float16.js";
import { floatToHalf, halfToFloat } from "./hf/safetensors.js";

test("float32 → float16 rounds to nearest even (normals, subnormals, ties, overflow, NaN) and agrees with the scalar reference", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [FLOAT16_MAX, 0x7bff],
    [65519, 0x7bff], // below the midpoint to the next (65536): stays finite
    [65520, 0x7c00], // the midpoint rounds to even: ∞
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: a tie, rounds to even 0
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: to even
    [1 + 3 * 2 ** -11, 0x3c02], // tie: to even (up)
  ];
  const bits = float32ToFloat16(Float32Array.from(cases.map((c) => c[0])));
  cases.forEach(([v, want], i) => assert.equal(bits[i], want, `${v} → 0x${bits[i]!.toString(16)}, want 0x${want.toString(16)}`));
  assert.ok(Number.isNaN(float16ToFloat32(float32ToFloat16(new Float32Array([NaN])))[0]));
  const rnd = new Float32Array(20000);
  let s = 7;
  for (let i = 0; i < rnd.length; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    rnd[i] = ((s / 2 ** 31 - 0.5) * 2 ** ((i % 40) - 26));
  }
  const fast = float32ToFloat16(rnd);
  const back = float16ToFloat32(fast);
  for (let i = 0; i < rnd.length; i++) {
    assert.equal(fast[i], floatToHalf(rnd[i]!), `bits of ${rnd[i]}`);
    assert.equal(back[i], halfToFloat(fast[i]!), `value of 0x${fast[i]!.toString(16)}`);
  }
  assert.equal(firstNonFiniteHalf(fast), -1);
  assert.equal(firstNonFiniteHalf(float32ToFloat16(new Float32Array([1, 2, 7e4]))), 2);
});
