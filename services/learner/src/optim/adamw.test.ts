import { test } from "node:test";
import assert from "node:assert/strict";
import { adamwStep, DEFAULT_ADAMW_CONFIG, initAdamW } from "./adamw.js";
import { TensorMismatchError, type NamedTensors } from "./named-tensors.js";

const close = (a: number, b: number, tol = 1e-6): void => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);
const one = (name: string, x: number): NamedTensors => ({ [name]: { shape: [1], data: Float32Array.of(x) } });

test("two AdamW steps by hand (lr 0.1, wd 0.01, betas 0.9/0.999)", () => {
  const p = one("w", 1);
  const st = initAdamW(p);
  adamwStep(p, one("w", 0.5), st, 0.1);
  // m̂ = 0.5, v̂ = 0.25 -> adam 1; p = 1 - 0.1*0.01*1 - 0.1*1
  close(p["w"]!.data[0]!, 0.899);
  adamwStep(p, one("w", -0.5), st, 0.1);
  // m = -0.005, v = 0.00049975; m̂ = -0.0263158, v̂ = 0.25 -> adam -0.0526316
  close(p["w"]!.data[0]!, 0.899 - 0.1 * 0.01 * 0.899 + 0.1 * (0.005 / 0.19 / 0.5));
  assert.equal(st.step, 2);
  close(st.m["w"]!.data[0]!, -0.005);
  close(st.v["w"]!.data[0]!, 0.00049975, 1e-9);
});

test("weight decay is decoupled and can be switched off per name", () => {
  const p: NamedTensors = { ...one("w", 2), ...one("bias", 2) };
  const st = initAdamW(p);
  const zeroGrad: NamedTensors = { ...one("w", 0), ...one("bias", 0) };
  adamwStep(p, zeroGrad, st, 0.5, { ...DEFAULT_ADAMW_CONFIG, weightDecay: 0.1, noDecay: (n) => n === "bias" });
  close(p["w"]!.data[0]!, 2 - 0.5 * 0.1 * 2);
  assert.equal(p["bias"]!.data[0], 2);
});

test("mismatched gradients are refused", () => {
  const p = one("w", 1);
  assert.throws(() => adamwStep(p, one("v", 1), initAdamW(p), 0.1), TensorMismatchError);
});
