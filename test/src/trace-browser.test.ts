// The decode-trace page in a real browser: `rlmesh trace` decodes a toy prompt with the shipped
// tiny-coder on onnxruntime (a real process, traced), writes the page, its traces JSON and a PNG;
// headless Chromium (Debian's `chromium`) loads the page at several steps and the DOM after the
// page's script ran must show exactly the trace: every token with its commit step, the step
// count, which tokens are still masked at that step. Screenshots land in
// test-artifacts/trace-browser/ (or RLMESH_TEST_ARTIFACTS). No Chromium = the test fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { normalizeTraces, traceSteps } from "@rlmesh/shared/trace/index";
import { chromiumBinary } from "@rlmesh/cli/trace/chromium-still";

const ARTIFACTS = process.env.RLMESH_TEST_ARTIFACTS ? join(process.env.RLMESH_TEST_ARTIFACTS, "trace-browser") : join(REPO_ROOT, "test-artifacts", "trace-browser");
const CLI = join(REPO_ROOT, "services", "cli", "dist", "main.js");
const MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder");

/** The DOM after the page's script ran (`--dump-dom`), opened at `#step=K` when given. */
function dumpDom(bin: string, html: string, step?: number): string {
  const profile = mkdtempSync(join(tmpdir(), "rlmesh-trace-dom-"));
  try {
    const url = pathToFileURL(html).href + (step !== undefined ? `#step=${step}` : "");
    const r = spawnSync(
      bin,
      ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", `--user-data-dir=${profile}`, "--virtual-time-budget=2000", "--dump-dom", url],
      { encoding: "utf8", timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
    );
    assert.equal(r.status, 0, `chromium --dump-dom failed: ${r.error?.message ?? r.stderr}`);
    return r.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

interface DomSample {
  tokens: number;
  shown: number;
  spans: Array<{ step: number; masked: boolean; text: string }>;
}

/** The samples as the page's DOM shows them. */
function readDom(dom: string): { ready: boolean; step: number; stepMax: number; scrubValue: number; samples: DomSample[] } {
  const body = /<body([^>]*)>/.exec(dom)?.[1] ?? "";
  const attr = (s: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(s)?.[1];
  const sections = [...dom.matchAll(/<section class="sample"([^>]*)>([\s\S]*?)<\/section>/g)];
  return {
    ready: attr(body, "data-ready") === "1",
    step: Number(attr(body, "data-step")),
    stepMax: Number(/<b id="step-max">(\d+)<\/b>/.exec(dom)?.[1]),
    scrubValue: Number(/<input id="scrub"[^>]*>/.exec(dom)?.[0].match(/value="(\d+)"/)?.[1]),
    samples: sections.map(([, attrs, inner]) => ({
      tokens: Number(attr(attrs!, "data-tokens")),
      shown: Number(attr(attrs!, "data-shown")),
      spans: [...inner!.matchAll(/<span class="(t[^"]*)" data-s="(\d+)"[^>]*>([\s\S]*?)<\/span>/g)].map(([, cls, s, text]) => ({
        step: Number(s),
        masked: cls!.split(" ").includes("m"),
        text: unescape(text!),
      })),
    })),
  };
}

test("rlmesh trace: a real tiny-coder decode, rendered, replays in headless Chromium exactly as traced", { timeout: 300_000 }, () => {
  const bin = chromiumBinary(); // throws (the test fails) without Chromium
  mkdirSync(ARTIFACTS, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-trace-browser-"));
  const row = JSON.parse(readFileSync(join(REPO_ROOT, "datasets", "toy", "train.jsonl"), "utf8").split("\n")[3]!) as { prompt: string };
  const promptFile = join(dir, "prompt.txt");
  writeFileSync(promptFile, row.prompt);
  const html = join(dir, "trace.html");
  const jsonFile = join(dir, "trace.json");
  const png = join(ARTIFACTS, "trace-step-final.png");
  const run = spawnSync(
    process.execPath,
    [CLI, "trace", "--model", MODEL_DIR, "--prompt-file", promptFile, "--samples", "2", "--temperature", "1", "--seed", "3", "--out", html, "--json", jsonFile, "--png", png],
    { encoding: "utf8", timeout: 180_000, env: { ...process.env, RLMESH_LOG_LEVEL: "error" } },
  );
  assert.equal(run.status, 0, `rlmesh trace failed: ${run.stderr}`);
  const traces = normalizeTraces(JSON.parse(readFileSync(jsonFile, "utf8")));
  assert.equal(traces.length, 2);
  // The summary prints each sample's order correlation.
  for (const t of traces) assert.ok(run.stdout.includes(t.orderCorrelation!.toFixed(3)), run.stdout);
  const maxStep = Math.max(...traces.map((t) => traceSteps(t)));
  assert.ok(maxStep > 1, "a multi-step decode");

  // Opened plain (the finished decode), at step 0 (all masked) and half-way.
  for (const step of [undefined, 0, Math.floor(maxStep / 2)]) {
    const dom = readDom(dumpDom(bin, html, step));
    const k = step ?? maxStep;
    assert.ok(dom.ready, "the page's script ran");
    assert.equal(dom.step, k);
    assert.equal(dom.scrubValue, k, "the scrubber sits at the step shown");
    assert.equal(dom.stepMax, maxStep, "the step count shown is the trace's");
    assert.equal(dom.samples.length, traces.length);
    dom.samples.forEach((s, i) => {
      const t = traces[i]!;
      assert.equal(s.tokens, t.tokenTexts.length);
      assert.deepEqual(
        s.spans.map((x) => x.step),
        t.commitSteps,
        `sample ${i}: each token carries its commit step`,
      );
      assert.deepEqual(
        s.spans.map((x) => x.text),
        t.tokenTexts.map((x) => (x === "" ? "∅" : x)),
        `sample ${i}: the tokens shown are the trace's`,
      );
      const committed = t.commitSteps.filter((c) => c <= k).length;
      assert.equal(s.shown, committed, `sample ${i} at step ${k}: committed tokens shown`);
      assert.deepEqual(
        s.spans.map((x) => x.masked),
        t.commitSteps.map((c) => c > k),
        `sample ${i} at step ${k}: exactly the later tokens are masked`,
      );
    });
  }

  // The PNG still: a real image of the page's width.
  const img = readFileSync(png);
  assert.deepEqual([...img.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG");
  assert.equal(img.readUInt32BE(16), 1100, "page width");
  assert.ok(img.length > 10_000, `a PNG with content (${img.length} bytes)`);
  const mid = spawnSync(process.execPath, [CLI, "trace", "--input", jsonFile, "--out", join(dir, "again.html"), "--png", join(ARTIFACTS, "trace-step-half.png"), "--png-step", String(Math.floor(maxStep / 2))], {
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(mid.status, 0, mid.stderr);
  // An animated GIF of the replay (3 stills: step 0, half-way, the end).
  const gifFile = join(ARTIFACTS, "trace.gif");
  const gifRun = spawnSync(process.execPath, [CLI, "trace", "--input", jsonFile, "--out", join(dir, "gif.html"), "--gif", gifFile, "--gif-frames", "3"], {
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(gifRun.status, 0, gifRun.stderr);
  assert.match(gifRun.stdout, new RegExp(`3 frames: steps 0, ${Math.round(maxStep / 2)}, ${maxStep}`));
  const gif = readFileSync(gifFile);
  assert.equal(gif.subarray(0, 6).toString(), "GIF89a");
  assert.equal(gif.readUInt16LE(6), 1100, "GIF width");
  assert.equal(gif.at(-1), 0x3b, "GIF trailer");
  const sections = (f: string) => readFileSync(f, "utf8").match(/<section[\s\S]*?<\/section>/g);
  assert.deepEqual(sections(join(dir, "again.html")), sections(html), "the JSON renders the same samples again");
  rmSync(dir, { recursive: true, force: true });
});

test("rlmesh trace: malformed trace input and bad flags fail with a clear message naming the field", () => {
  const dir = mkdtempSync(join(tmpdir(), "rlmesh-trace-bad-"));
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, "trace", ...args], { encoding: "utf8", timeout: 60_000 });
  const bad = join(dir, "bad.json");
  writeFileSync(bad, JSON.stringify({ samples: [{ token_texts: ["a", "b"], commit_steps: [1, 0] }] }));
  let r = cli("--input", bad, "--out", join(dir, "x.html"));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /samples\[0\]\.commit_steps: must be an array of integers >= 1/);
  writeFileSync(bad, "{not json");
  r = cli("--input", bad);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.json: not JSON/);
  r = cli("--input", bad, "--job", "j1");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /exactly one source/);
  r = cli("--model", MODEL_DIR);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--model needs --prompt-file/);
  r = cli("--model", MODEL_DIR, "--dataset", join(dir, "missing.jsonl"));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--dataset .*missing\.jsonl/);
  const good = join(dir, "good.json");
  writeFileSync(good, JSON.stringify([{ token_texts: ["a", "b"], commit_steps: [2, 1] }]));
  r = cli("--input", good, "--out", join(dir, "g.html"), "--gif", join(dir, "g.gif"), "--gif-frames", "1");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--gif-frames must be an integer >= 2, got 1/);
  rmSync(dir, { recursive: true, force: true });
});
