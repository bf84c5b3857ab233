#!/usr/bin/env node
// Calibration of the learner's collapse guard against recorded step rewards:
//   node scripts/guard-sim.mjs [rewards.json]   (default: the demo's 333 recorded step rewards)
// Resamples the healthy trace into synthetic healthy runs of the same length and prints how often
// each rule rolls back (a false alarm), and how many steps after an injected collapse (reward ×0,
// ×0.25, ×0.5 from step 100) it triggers. Needs `npm run build`.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_COLLAPSE_GUARD_CONFIG,
  initialCollapseGuardState,
  noteCheckpoint,
  observeStepReward,
} from "../services/learner/dist/collapse-guard.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const file = process.argv[2] ?? join(root, "services", "learner", "test-data", "demo-step-rewards.json");
const trace = JSON.parse(readFileSync(file, "utf8")).rewards;
if (!Array.isArray(trace) || trace.length < 50) throw new Error(`${file}: expected {"rewards": [at least 50 numbers]}`);

let state = 12345; // mulberry32: a seeded, reproducible resampling
const rnd = () => {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const draw = () => trace[Math.floor(rnd() * trace.length)];

/** Step of the first rollback/stop (checkpoint after every step), or -1. */
function firstTrigger(cfg, rewards) {
  let s = noteCheckpoint(initialCollapseGuardState(), 0);
  for (let i = 0; i < rewards.length; i++) {
    const r = observeStepReward(s, cfg, { step: i, rewardMean: rewards[i] });
    s = noteCheckpoint(r.state, i + 1);
    if (r.decision.kind !== "continue") return i;
  }
  return -1;
}

const rules = {
  "single steps (window 10, the old rule)": { ...DEFAULT_COLLAPSE_GUARD_CONFIG, rewardSmoothing: 1, rewardWindow: 10 },
  [`defaults (mean of ${DEFAULT_COLLAPSE_GUARD_CONFIG.rewardSmoothing} steps, window ${DEFAULT_COLLAPSE_GUARD_CONFIG.rewardWindow})`]:
    DEFAULT_COLLAPSE_GUARD_CONFIG,
};
const mean = trace.reduce((a, b) => a + b, 0) / trace.length;
console.log(`${file}: ${trace.length} steps, mean reward ${mean.toFixed(3)}`);
const RUNS = 2000;
const COLLAPSE_AT = 100;
for (const [name, cfg] of Object.entries(rules)) {
  let falseAlarms = 0;
  for (let k = 0; k < RUNS; k++) if (firstTrigger(cfg, Array.from({ length: trace.length }, draw)) >= 0) falseAlarms++;
  const delays = [0, 0.25, 0.5].map((factor) => {
    let sum = 0, caught = 0, missed = 0;
    for (let k = 0; k < 500; k++) {
      const t = firstTrigger(cfg, Array.from({ length: 2 * COLLAPSE_AT }, (_, i) => draw() * (i >= COLLAPSE_AT ? factor : 1)));
      if (t >= COLLAPSE_AT) (sum += t - COLLAPSE_AT), caught++;
      else if (t < 0) missed++;
    }
    return `x${factor}: ${caught ? (sum / caught).toFixed(1) : "-"} steps (missed ${missed}/500)`;
  });
  console.log(`${name}: false rollback in ${((100 * falseAlarms) / RUNS).toFixed(1)} % of healthy ${trace.length}-step runs; collapse caught after ${delays.join(", ")}`);
}
