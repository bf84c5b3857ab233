/**
 * The size of jax-js's WebAssembly heap. jax-js keeps every array of its wasm backend in one
 * linear memory that it grows and never shrinks, with a 4 GiB ceiling (memory32): its allocator
 * reuses a freed block only for a later request of the same size class (above 64 KiB: the same
 * size rounded to 64 KiB) and never merges blocks, so every new batch shape's buffers take fresh
 * memory that only that shape (or one with the same buffer sizes) can use again. Once the heap is
 * at 4 GiB, the next new shape fails with "Allocation exceeds the 4 GiB memory32 limit".
 *
 * jax-js does not expose the memory, and creates it when its module is evaluated; this module
 * records the WebAssembly.Memory objects created while it is installed. jax-runtime.ts imports it
 * right before @jax-js/jax and calls stopRecordingWasmMemories() once jax-js is loaded, so only
 * jax-js's memory is recorded and the global is restored.
 */

/** The most a memory32 WebAssembly heap can hold (jax-js's allocator refuses past it). */
export const WASM_HEAP_LIMIT_BYTES = 2 ** 32;

/** The part of WebAssembly.Memory used here (the compile setup has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: { readonly byteLength: number };
}
type MemoryClass = new (descriptor: object) => WasmMemory;
const wasm = (globalThis as unknown as { WebAssembly: { Memory: MemoryClass } }).WebAssembly;

const recorded: WasmMemory[] = [];
const Original = wasm.Memory;

class RecordedMemory extends Original {
  constructor(descriptor: object) {
    super(descriptor);
    recorded.push(this);
  }
}

wasm.Memory = RecordedMemory;

/** Restores the global WebAssembly.Memory (memories created later are not counted). */
export function stopRecordingWasmMemories(): void {
  wasm.Memory = Original;
}

/**
 * Bytes of jax-js's wasm heap now (its linear memory, all of it reserved for good), or null when
 * no memory was recorded (jax-js was loaded before this module: see jax-runtime.ts).
 */
export function wasmHeapBytes(): number | null {
  if (recorded.length === 0) return null;
  return recorded.reduce((a, m) => a + m.buffer.byteLength, 0);
}
