// Order matters: the polyfills must run before @jax-js/jax is evaluated.
import "./iterator-helpers-polyfill.js";
import "./worker-shim.js";
// Records the wasm memory jax-js creates when it loads (wasmHeapBytes).
import { stopRecordingWasmMemories } from "./wasm-heap.js";

import { defaultDevice, init } from "@jax-js/jax";

stopRecordingWasmMemories();

/**
 * Import jax-js through this module (not "@jax-js/jax" directly) anywhere in the learner: ES
 * modules evaluate imports in order, and the shim must run before jax-js loads, or the wasm
 * backend fails with "LinkError: memory import 0 has no maximum limit".
 */
export { grad, jit, lax, nn, numpy, tree, valueAndGrad, vjp } from "@jax-js/jax";
export type { Array as JaxArray } from "@jax-js/jax";
export { WASM_HEAP_LIMIT_BYTES, wasmHeapBytes } from "./wasm-heap.js";

let ready: Promise<void> | null = null;

/**
 * Starts the jax-js wasm backend once per process (Node has no WebGPU). Every learner entry point
 * awaits this before touching jax-js arrays.
 */
export function initJax(): Promise<void> {
  ready ??= (async () => {
    const devices = await init("wasm");
    if (!devices.includes("wasm")) throw new Error(`jax-js: wasm backend unavailable (got ${devices.join(",")})`);
    defaultDevice("wasm");
  })();
  return ready;
}
