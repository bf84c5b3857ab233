/**
 * A browser-style `Worker` over node:worker_threads, so the jax-js wasm backend runs its kernels
 * on several threads (1.3–1.5× on 2 cores). It must be installed BEFORE @jax-js/jax is imported:
 * jax-js decides at load time whether its wasm memory is shared; loading it later fails with a
 * LinkError. A shim worker holds the process open only while a kernel it was sent is running
 * (every jax-js request gets exactly one reply), so idle threads never keep Node alive.
 */
import { availableParallelism } from "node:os";
import { resolveObjectURL } from "node:buffer";
import { Worker as NodeWorker } from "node:worker_threads";

/** Env var that sets the number of jax-js compute threads (default: all cores). */
export const JAX_THREADS_ENV = "RLMESH_JAX_THREADS";

// Runs inside each thread: the first message is the kernel-runner source that jax-js put in a blob
// URL (blob URLs are per-thread in Node 20, so the main thread reads it); expose `self` and
// `postMessage` as in a browser worker, evaluate it, then forward every later message.
const BOOTSTRAP = `
const { parentPort } = require("node:worker_threads");
globalThis.self = globalThis;
globalThis.postMessage = (m) => parentPort.postMessage(m);
let loaded = false;
parentPort.on("message", (data) => {
  if (!loaded) {
    loaded = true;
    new Function(data.source)();
    return;
  }
  if (globalThis.onmessage) globalThis.onmessage({ data });
});
`;

class NodeBackedWorker {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: { message: string }) => void) | null = null;
  private readonly worker: NodeWorker;
  private pending = 0;
  private queued: unknown[] | null = [];

  constructor(url: string | URL) {
    this.worker = new NodeWorker(BOOTSTRAP, { eval: true });
    this.worker.on("message", (data: unknown) => {
      if (this.pending > 0 && --this.pending === 0) this.worker.unref();
      this.onmessage?.({ data });
    });
    this.worker.on("error", (err: Error) => this.onerror?.({ message: err.message }));
    const blob = resolveObjectURL(String(url));
    if (!blob) throw new Error(`worker shim: no blob behind ${String(url)}`);
    blob.text().then(
      (source) => {
        this.worker.postMessage({ source });
        for (const m of this.queued ?? []) this.worker.postMessage(m);
        this.queued = null;
      },
      (err: Error) => this.onerror?.({ message: err.message }),
    );
  }

  postMessage(message: unknown): void {
    if (this.pending++ === 0) this.worker.ref();
    if (this.queued) this.queued.push(message);
    else this.worker.postMessage(message);
  }

  terminate(): void {
    void this.worker.terminate();
  }
}

/** Threads for jax-js: RLMESH_JAX_THREADS if set, else the machine's parallelism. */
export function jaxThreadCount(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[JAX_THREADS_ENV];
  if (raw === undefined || raw === "") return availableParallelism();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${JAX_THREADS_ENV} must be a positive integer, got "${raw}"`);
  return n;
}

const g = globalThis as Record<string, unknown>;
const threads = jaxThreadCount();
if (threads > 1 && g["Worker"] === undefined) g["Worker"] = NodeBackedWorker;
// jax-js sizes its pool from navigator.hardwareConcurrency (absent on Node 20, where it assumes 4).
if (g["navigator"] === undefined) g["navigator"] = { hardwareConcurrency: threads };
else {
  try {
    Object.defineProperty(g["navigator"] as object, "hardwareConcurrency", { value: threads, configurable: true });
  } catch {
    // read-only navigator on newer Node: keep its count
  }
}

export {};
