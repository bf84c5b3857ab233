import assert from "node:assert/strict";
import { test } from "node:test";
import { normalizeTraces, orderCorrelation, orderLabel, renderTraceHtml, TraceFormatError } from "./index.js";

test("order correlation: 1 for left to right, -1 for right to left, 0 when undefined", () => {
  assert.equal(orderCorrelation([1, 2, 3, 4, 5]), 1);
  assert.ok(Math.abs(orderCorrelation([5, 4, 3, 2, 1]) + 1) < 1e-12);
  assert.equal(orderCorrelation([3, 3, 3]), 0);
  assert.equal(orderCorrelation([7]), 0);
  // Ends first, middle last (a sketch): symmetric, so no linear order at all.
  assert.ok(Math.abs(orderCorrelation([1, 2, 3, 2, 1])) < 1e-12);
  // Pearson of (0,1,2,3) and (1,3,2,4): cov 1.5*... computed by hand = 0.8
  assert.ok(Math.abs(orderCorrelation([1, 3, 2, 4]) - 0.8) < 1e-12);
  assert.equal(orderLabel(0.95), "left-to-right");
  assert.equal(orderLabel(0.6), "interleaved");
  assert.equal(orderLabel(0.1), "sketch-first");
});

test("normalizeTraces accepts a GetJobTraces response in snake or camel case and fills the correlation", () => {
  const [a, b] = normalizeTraces({
    samples: [
      { prompt_id: "t1", prompt_text: "def f():", token_texts: ["a", "b"], commit_steps: [2, 1], reward: 1, step: "3", nfe: 2 },
      { promptId: "t2", tokenTexts: ["x"], commitSteps: [1], tokenIds: [7] },
    ],
  });
  assert.equal(a!.promptId, "t1");
  assert.equal(a!.step, 3);
  assert.equal(a!.reward, 1);
  assert.equal(a!.orderCorrelation, -1);
  assert.deepEqual(b!.tokenIds, [7]);
  assert.equal(b!.promptText, "");
});

test("malformed traces are rejected with the field named", () => {
  const fails = (input: unknown, field: string, re: RegExp) =>
    assert.throws(
      () => normalizeTraces(input),
      (e: unknown) => e instanceof TraceFormatError && e.field === field && re.test(e.message),
      JSON.stringify(input),
    );
  fails("nope", "samples", /expected an array/);
  fails({ samples: [] }, "samples", /no traced samples/);
  fails([{ token_texts: ["a"], commit_steps: [0] }], "traces[0].commit_steps", /integers >= 1/);
  fails({ samples: [{ token_texts: ["a", "b"], commit_steps: [1] }] }, "samples[0].commit_steps", /1 entries but token_texts has 2/);
  fails({ samples: [{ token_texts: [1], commit_steps: [1] }] }, "samples[0].token_texts", /array of strings/);
  fails({ samples: [{ token_texts: ["a"], commit_steps: [1], reward: "x" }] }, "samples[0].reward", /finite number/);
  fails({ samples: [{ token_texts: ["a", "b"], commit_steps: [1, 5], nfe: 3 }] }, "samples[0].commit_steps", /more than the sample's nfe 3/);
});

test("renderTraceHtml: self-contained, escaped, one span per token with its step, scrubber over all steps", () => {
  const traces = normalizeTraces([
    { prompt_id: "p<1>", prompt_text: "print('<b>')", token_texts: ["x", " = ", "</script>", ""], commit_steps: [1, 3, 2, 4], reward: 0.5 },
    { prompt_id: "p2", token_texts: ["y"], commit_steps: [1] },
  ]);
  const html = renderTraceHtml(traces, { title: "T & T" });
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /\b(src|href)=/, "no external assets");
  assert.equal(html.split("</script>").length, 2, "token text cannot close the page's script");
  assert.match(html, /&lt;\/script&gt;/);
  assert.match(html, /<title>T &amp; T<\/title>/);
  assert.match(html, /<h2>p&lt;1&gt;/);
  assert.equal((html.match(/<span class="t[ "]/g) ?? []).length, 5);
  assert.deepEqual([...html.matchAll(/data-s="(\d+)"/g)].map((m) => Number(m[1])), [1, 3, 2, 4, 1]);
  assert.match(html, /<input id="scrub" type="range" min="0" max="4" value="4"/);
  assert.match(html, /<b id="step-max">4<\/b>/);
  assert.match(html, /data-tokens="4" data-steps="4"/);
  assert.throws(() => renderTraceHtml([]), /no traced samples/);
});
