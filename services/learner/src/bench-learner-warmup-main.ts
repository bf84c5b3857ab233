// One mode of `rlmesh bench learner --first-steps N` in a process of its own (jax-js keeps its
// compiled kernels per process): prints the run as one JSON line on stdout.
// Usage: node bench-learner-warmup-main.js on|off <steps> <model-dir> <scratch-dir>
import { runFirstSteps } from "./bench-learner-warmup.js";

const [mode, steps, modelDir, scratch] = process.argv.slice(2);
if ((mode !== "on" && mode !== "off") || !Number(steps) || !modelDir || !scratch) {
  console.error("usage: bench-learner-warmup-main on|off <steps> <model-dir> <scratch-dir>");
  process.exit(2);
}
const run = await runFirstSteps(mode, Number(steps), modelDir, scratch);
console.log(JSON.stringify(run));
process.exit(0);
