/** Parameters, gradients and optimizer moments: float32 tensors by name, flat row-major data. */
export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export type NamedTensors = Record<string, NamedTensor>;

export function cloneNamedTensors(t: NamedTensors): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(t)) out[k] = { shape: [...v.shape], data: Float32Array.from(v.data) };
  return out;
}

export function zerosLikeNamed(t: NamedTensors): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(t)) out[k] = { shape: [...v.shape], data: new Float32Array(v.data.length) };
  return out;
}

/** Thrown when two tensor maps that must match (params vs grads vs moments) do not. */
export class TensorMismatchError extends Error {
  override name = "TensorMismatchError";
}

export function assertSameLayout(a: NamedTensors, b: NamedTensors, what: string): void {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join("\0") !== kb.join("\0")) throw new TensorMismatchError(`${what}: names differ (${ka.join(",")} vs ${kb.join(",")})`);
  for (const k of ka) {
    if (a[k]!.data.length !== b[k]!.data.length) {
      throw new TensorMismatchError(`${what}: ${k} has ${a[k]!.data.length} vs ${b[k]!.data.length} elements`);
    }
  }
}

/**
 * One step of an exponential moving average, in place: avg = decay·avg + (1 − decay)·x, in
 * float64 per element (rounded to float32 once). Returns `avg`.
 */
export function emaUpdateNamed(avg: NamedTensors, x: NamedTensors, decay: number): NamedTensors {
  assertSameLayout(avg, x, "moving average");
  const keep = decay;
  const take = 1 - decay;
  for (const [k, a] of Object.entries(avg)) {
    const xd = x[k]!.data;
    const ad = a.data;
    for (let i = 0; i < ad.length; i++) ad[i] = keep * ad[i]! + take * xd[i]!;
  }
  return avg;
}
