import { test } from "node:test";
import assert from "node:assert/strict";
import { clippedSurrogateToken, k3Kl } from "./clipped-surrogate.js";
import { DEFAULT_GRPO_LOSS_CONFIG } from "./grpo-config.js";

const cfg = DEFAULT_GRPO_LOSS_CONFIG;
const close = (a: number, b: number, tol = 1e-9): void => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

test("positive advantage: ratio above 1+eps_high is clipped (no gradient), below is not", () => {
  const hi = clippedSurrogateToken(Math.log(1.5), 1, cfg);
  close(hi.loss, -1.28);
  assert.equal(hi.clippedHigh, true);
  const lo = clippedSurrogateToken(Math.log(0.5), 1, cfg);
  close(lo.loss, -0.5);
  assert.equal(lo.clippedHigh || lo.clippedLow, false);
});

test("clip-higher: ratio 1.25 with A>0 is inside [0.8, 1.28] although a symmetric 0.2 clip would cut it", () => {
  const s = clippedSurrogateToken(Math.log(1.25), 1, cfg);
  close(s.loss, -1.25);
  assert.equal(s.clippedHigh, false);
  const sym = clippedSurrogateToken(Math.log(1.25), 1, { ...cfg, clipEpsHigh: 0.2 });
  close(sym.loss, -1.2);
  assert.equal(sym.clippedHigh, true);
});

test("negative advantage: ratio below 1-eps_low is clipped, above is not", () => {
  const lo = clippedSurrogateToken(Math.log(0.5), -1, cfg);
  close(lo.loss, 0.8);
  assert.equal(lo.clippedLow, true);
  const hi = clippedSurrogateToken(Math.log(1.5), -1, cfg);
  close(hi.loss, 1.5);
  assert.equal(hi.clippedLow || hi.clippedHigh, false);
});

test("dual-clip bounds the loss of negative advantages at -c*A", () => {
  const dual = { ...cfg, dualClipC: 3 };
  const big = clippedSurrogateToken(Math.log(4), -1, dual);
  close(big.loss, 3);
  assert.equal(big.dualClipped, true);
  const inside = clippedSurrogateToken(Math.log(2), -2, dual);
  close(inside.loss, 4);
  assert.equal(inside.dualClipped, false);
  // positive advantages are untouched
  close(clippedSurrogateToken(Math.log(4), 1, dual).loss, -1.28);
  // off by default
  close(clippedSurrogateToken(Math.log(4), -1, cfg).loss, 4);
});

test("huge log-ratios are clamped instead of overflowing; k3 KL is 0 at equality and positive otherwise", () => {
  assert.ok(Number.isFinite(clippedSurrogateToken(500, -1, cfg).loss));
  assert.equal(k3Kl(0), 0);
  close(k3Kl(0.5), Math.exp(0.5) - 1.5);
  assert.ok(k3Kl(-0.5) > 0);
});
