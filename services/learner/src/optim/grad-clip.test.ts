import { test } from "node:test";
import assert from "node:assert/strict";
import { clipGradNorm, globalGradNorm } from "./grad-clip.js";
import type { NamedTensors } from "./named-tensors.js";

const grads = (): NamedTensors => ({ a: { shape: [2], data: Float32Array.of(3, 0) }, b: { shape: [1], data: Float32Array.of(4) } });

test("global norm over all tensors; clipping scales to maxNorm and reports the norm before", () => {
  const g = grads();
  assert.equal(globalGradNorm(g), 5);
  const r = clipGradNorm(g, 1);
  assert.equal(r.norm, 5);
  assert.ok(Math.abs(globalGradNorm(g) - 1) < 1e-5);
  assert.ok(Math.abs(g["a"]!.data[0]! - 0.6) < 1e-5 && Math.abs(g["b"]!.data[0]! - 0.8) < 1e-5);
  const h = grads();
  assert.equal(clipGradNorm(h, 10).scale, 1);
  assert.deepEqual(h, grads());
});

test("a non-finite norm is reported and leaves gradients untouched", () => {
  const g = grads();
  g["a"]!.data[1] = Number.NaN;
  const r = clipGradNorm(g, 1);
  assert.equal(r.finite, false);
  assert.equal(g["b"]!.data[0], 4);
});
