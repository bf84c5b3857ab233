import { InvalidArgumentError } from "./errors.js";

/** Field checks that throw InvalidArgumentError naming the field. */
export const check = {
  nonEmpty(field: string, v: string | undefined | null): string {
    if (!v || v.trim() === "") throw new InvalidArgumentError(field, "must not be empty");
    return v;
  },
  int(field: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new InvalidArgumentError(field, `must be an integer in [${min}, ${max}], got ${v}`);
    }
    return v;
  },
  range(field: string, v: number, min: number, max: number): number {
    if (!Number.isFinite(v) || v < min || v > max) throw new InvalidArgumentError(field, `must be in [${min}, ${max}], got ${v}`);
    return v;
  },
  oneOf<T extends string>(field: string, v: string, values: readonly T[]): T {
    if (!(values as readonly string[]).includes(v)) {
      throw new InvalidArgumentError(field, `must be one of ${values.join(", ")}, got ${JSON.stringify(v)}`);
    }
    return v as T;
  },
  present<T>(field: string, v: T | null | undefined): T {
    if (v === null || v === undefined) throw new InvalidArgumentError(field, "is required");
    return v;
  },
};
