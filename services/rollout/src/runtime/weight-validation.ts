/**
 * Checks a new weight version against the serving model before any worker sees it: the same
 * set of float32 tensors with the same shapes, and only finite values.
 */
import type { HostTensor } from "@rlmesh/shared";
import { parseModel, readWeights } from "@rlmesh/shared/model/index";

export interface WeightSpec {
  name: string;
  dtype: "DTYPE_FLOAT32";
  shape: number[];
}

/** Thrown when a weight version does not fit the model; the message names the tensor and the problem. */
export class WeightValidationError extends Error {
  override name = "WeightValidationError";
}

/** The swappable weights of a serialized model: its float32 initializers, in graph order. */
export function weightSpecsOf(modelBytes: Uint8Array): WeightSpec[] {
  return [...readWeights(parseModel(modelBytes))].map(([name, w]) => ({ name, dtype: "DTYPE_FLOAT32", shape: w.shape }));
}

/** Validated float32 data by name, or WeightValidationError. Every weight must be present exactly once. */
export function validateWeights(specs: readonly WeightSpec[], tensors: readonly HostTensor[]): Map<string, Float32Array> {
  const bySpec = new Map(specs.map((s) => [s.name, s]));
  const out = new Map<string, Float32Array>();
  for (const t of tensors) {
    const spec = bySpec.get(t.name);
    if (!spec) throw new WeightValidationError(`unknown weight "${t.name}" (the model has no such tensor)`);
    if (out.has(t.name)) throw new WeightValidationError(`weight "${t.name}" appears twice`);
    if (t.dtype !== spec.dtype || !(t.data instanceof Float32Array)) {
      throw new WeightValidationError(`weight "${t.name}" is ${t.dtype}, expected ${spec.dtype}`);
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new WeightValidationError(`weight "${t.name}" has shape [${t.shape.join(", ")}], expected [${spec.shape.join(", ")}]`);
    }
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n)
      throw new WeightValidationError(`weight "${t.name}" has ${t.data.length} values, shape [${spec.shape.join(", ")}] needs ${n}`);
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(t.data[i])) throw new WeightValidationError(`weight "${t.name}" has a non-finite value at index ${i}`);
    }
    out.set(t.name, t.data);
  }
  const missing = specs.filter((s) => !out.has(s.name)).map((s) => s.name);
  if (missing.length > 0)
    throw new WeightValidationError(
      `missing weights: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` (+${missing.length - 5} more)` : ""}`,
    );
  return out;
}
