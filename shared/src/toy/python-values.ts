/**
 * Python semantics the generator needs to compute expected outputs in TypeScript:
 * floor division and modulo (sign of the divisor), and `repr` / `print` text of values.
 */
export type PyValue = number | string | boolean | PyValue[];

export function pyFloorDiv(a: number, b: number): number {
  if (b === 0) throw new RangeError("division by zero");
  return Math.floor(a / b);
}

export function pyMod(a: number, b: number): number {
  if (b === 0) throw new RangeError("modulo by zero");
  const r = a % b;
  if (r === 0) return 0; // also turns JavaScript's -0 into 0
  return r < 0 !== b < 0 ? r + b : r;
}

/** Python `repr(value)`; strings are restricted to ASCII letters here, so JSON quoting is valid Python. */
export function pyRepr(value: PyValue): string {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new RangeError(`not a safe integer: ${value}`);
    return String(value);
  }
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "string") return JSON.stringify(value);
  return `[${value.map(pyRepr).join(", ")}]`;
}

/** What Python's `print(value)` writes, without the newline. */
export function pyStr(value: PyValue): string {
  return typeof value === "string" ? value : pyRepr(value);
}
