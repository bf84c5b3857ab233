import { test } from "node:test";
import assert from "node:assert/strict";
import { algConfidence, drawToken, greedyTokenProb, samplingProbs, softmaxLogProb, softmaxNorm, softmaxProb } from "./sampling.js";

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);

function probsOf(logits: number[], temperature: number, topP = 1, topK = 0): number[] {
  const out = new Float64Array(logits.length);
  samplingProbs(logits, 0, logits.length, { temperature, topP, topK }, out);
  return Array.from(out);
}

test("temperature divides logits before the softmax", () => {
  const l = [Math.log(1), Math.log(3)];
  const p1 = probsOf(l, 1);
  close(p1[0]!, 0.25);
  close(p1[1]!, 0.75);
  // T = 0.5 squares the odds: 1 : 9.
  const p2 = probsOf(l, 0.5);
  close(p2[1]!, 0.9);
  // Temperature 0 keeps the plain softmax (the confidence a greedy step reports).
  close(probsOf(l, 0)[1]!, 0.75);
});

test("top_p keeps the smallest head whose mass reaches top_p, then renormalises", () => {
  const l = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
  const p = probsOf(l, 1, 0.7);
  // 0.5 alone is below 0.7, so 0.3 is kept too; mass before 0.15 is 0.8 > 0.7: dropped.
  close(p[0]!, 0.5 / 0.8);
  close(p[1]!, 0.3 / 0.8);
  assert.equal(p[2], 0);
  assert.equal(p[3], 0);
});

test("top_k keeps the k largest logits", () => {
  const p = probsOf([0, 2, 1, 3], 1, 1, 2);
  assert.equal(p[0], 0);
  assert.equal(p[2], 0);
  close(p[3]!, Math.exp(3) / (Math.exp(3) + Math.exp(2)));
});

test("drawToken samples by inverse CDF with temperature > 0 and takes argmax at 0", () => {
  const p = Float64Array.from([0.2, 0.5, 0.3]);
  assert.equal(drawToken(p, 3, 1, 0.1), 0);
  assert.equal(drawToken(p, 3, 1, 0.65), 1);
  assert.equal(drawToken(p, 3, 1, 0.71), 2);
  assert.equal(drawToken(p, 3, 0, 0.01), 1);
  // Never returns a filtered (zero-probability) token.
  assert.equal(drawToken(Float64Array.from([0.6, 0, 0.4]), 3, 1, 0.7), 2);
});

test("confidence per alg: probability, top1 - top2 margin, negative entropy", () => {
  const p = Float64Array.from([0.6, 0.3, 0.1]);
  close(algConfidence("maskgit_plus", p, 3, 0), 0.6);
  close(algConfidence("origin", p, 3, 1), 0.3);
  close(algConfidence("topk_margin", p, 3, 0), 0.3);
  const negEnt = 0.6 * Math.log(0.6 + 1e-10) + 0.3 * Math.log(0.3 + 1e-10) + 0.1 * Math.log(0.1 + 1e-10);
  close(algConfidence("entropy", p, 3, 0), negEnt);
  // A peaked distribution is more confident than a flat one under every alg.
  const flat = Float64Array.from([0.34, 0.33, 0.33]);
  for (const alg of ["maskgit_plus", "topk_margin", "entropy"] as const) {
    assert.ok(algConfidence(alg, p, 3, 0) > algConfidence(alg, flat, 3, 0), alg);
  }
});

test("the greedy fast path gives the same token and probability as the full distribution", () => {
  const logits = [0.3, 2.5, -1, 2.5, 1.75, -Infinity];
  const p = new Float64Array(logits.length);
  samplingProbs(logits, 0, logits.length, { temperature: 0, topP: 1, topK: 0 }, p);
  const tok = drawToken(p, logits.length, 0, 0.5);
  assert.deepEqual(greedyTokenProb(logits, 0, logits.length), { token: tok, prob: p[tok] });
  assert.equal(tok, 1, "ties go to the lowest id");
});

test("softmaxLogProb: ln of softmaxProb, and finite where the probability underflows to 0", () => {
  const row = [1, 3, -2, 0.5];
  const norm = softmaxNorm(row, 0, row.length);
  for (let t = 0; t < row.length; t++) assert.ok(Math.abs(softmaxLogProb(row, 0, norm, t) - Math.log(softmaxProb(row, 0, norm, t))) < 1e-12);
  const far = [0, -2000];
  const n2 = softmaxNorm(far, 0, 2);
  assert.equal(softmaxProb(far, 0, n2, 1), 0);
  assert.ok(Math.abs(softmaxLogProb(far, 0, n2, 1) + 2000) < 1e-9);
});
