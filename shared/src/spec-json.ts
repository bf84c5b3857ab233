// Strict checking of a JSON object against a message of proto/ (a job spec file, or an object a
// TypeScript client is about to send). protobufjs would coerce silently on the way to the wire:
// an unknown key is dropped, "5" becomes 5, 2.5 becomes 2, "five" becomes 0. This check runs
// first and names the field and what was expected instead.
import { InvalidArgumentError } from "./grpc/errors.js";
import { loadProto } from "./proto.js";

interface FieldDescriptor {
  name: string;
  label: string;
  type: string;
  typeName: string;
}

interface MessageDescriptor {
  field: FieldDescriptor[];
}

const INT_RANGES: Record<string, [number, number]> = {
  TYPE_INT32: [-(2 ** 31), 2 ** 31 - 1],
  TYPE_SINT32: [-(2 ** 31), 2 ** 31 - 1],
  TYPE_SFIXED32: [-(2 ** 31), 2 ** 31 - 1],
  TYPE_UINT32: [0, 2 ** 32 - 1],
  TYPE_FIXED32: [0, 2 ** 32 - 1],
  TYPE_INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_SINT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_SFIXED64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_UINT64: [0, Number.MAX_SAFE_INTEGER],
  TYPE_FIXED64: [0, Number.MAX_SAFE_INTEGER],
};

export const snakeCase = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camelCase = (s: string): string => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name closest to `name`, when it is close enough to be a likely typo. */
export function nearestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(name.toLowerCase(), k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return `${typeof v} ${v.toString()}`;
  return typeof v === "object" ? "an object" : typeof v;
}

/** Descriptor type names are relative ("DatasetSpec") or qualified (".rlmesh.v1.DatasetSpec"). */
const qualified = (typeName: string) => `rlmesh.v1.${typeName.split(".").pop()}`;

function message(typeName: string): MessageDescriptor {
  const def = loadProto().definition[qualified(typeName)] as { type?: MessageDescriptor } | undefined;
  if (!def?.type) throw new Error(`proto message ${qualified(typeName)} not found`);
  return def.type;
}

function enumValues(typeName: string): string[] {
  const def = loadProto().definition[qualified(typeName)] as { type?: { value?: { name: string }[] } } | undefined;
  return (def?.type?.value ?? []).map((v) => v.name);
}

function checkScalar(path: string, f: FieldDescriptor, v: unknown): void {
  const range = INT_RANGES[f.type];
  if (range) {
    const is64 = f.type.endsWith("64");
    // The JSON mapping of proto3 allows 64-bit integers as decimal strings.
    const n = is64 && typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n) || n < range[0] || n > range[1]) {
      throw new InvalidArgumentError(path, `expected an integer in [${range[0]}, ${range[1]}], got ${describe(v)}`);
    }
    return;
  }
  switch (f.type) {
    case "TYPE_DOUBLE":
    case "TYPE_FLOAT":
      if (typeof v !== "number" || !Number.isFinite(v)) throw new InvalidArgumentError(path, `expected a number, got ${describe(v)}`);
      return;
    case "TYPE_BOOL":
      if (typeof v !== "boolean") throw new InvalidArgumentError(path, `expected true or false, got ${describe(v)}`);
      return;
    case "TYPE_STRING":
      if (typeof v !== "string") throw new InvalidArgumentError(path, `expected a string, got ${describe(v)}`);
      return;
    case "TYPE_BYTES":
      if (typeof v !== "string" && !(v instanceof Uint8Array)) throw new InvalidArgumentError(path, `expected base64 bytes, got ${describe(v)}`);
      return;
    case "TYPE_ENUM": {
      const values = enumValues(f.typeName);
      if (typeof v === "string" && values.includes(v)) return;
      throw new InvalidArgumentError(path, `expected one of ${values.join(", ")}, got ${describe(v)}`);
    }
    case "TYPE_MESSAGE":
      checkMessageJson(f.typeName, v, path);
      return;
    default:
      throw new Error(`${path}: unsupported proto field type ${f.type}`);
  }
}

/**
 * Checks `value` against proto message `rlmesh.v1.<typeName>` (keys in snake_case or camelCase;
 * null means unset). Throws InvalidArgumentError naming the field path: an unknown key (with the
 * nearest known one), a wrong type, a non-integer where an integer is expected.
 */
export function checkMessageJson(typeName: string, value: unknown, path: string): void {
  if (value === null || value === undefined) return;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidArgumentError(path, `expected an object (${typeName}), got ${describe(value)}`);
  }
  const fields = message(typeName).field;
  const byName = new Map(fields.map((f) => [f.name, f]));
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const f = byName.get(camelCase(key));
    const fieldPath = `${path}.${snakeCase(camelCase(key))}`;
    if (!f) {
      const near = nearestName(snakeCase(camelCase(key)), fields.map((x) => snakeCase(x.name)));
      throw new InvalidArgumentError(`${path}.${key}`, `unknown field${near ? ` (did you mean ${near}?)` : ""}; ${typeName} has ${fields.map((x) => snakeCase(x.name)).join(", ")}`);
    }
    if (v === null) continue;
    if (f.label === "LABEL_REPEATED") {
      if (!Array.isArray(v)) throw new InvalidArgumentError(fieldPath, `expected an array, got ${describe(v)}`);
      v.forEach((x, i) => checkScalar(`${fieldPath}[${i}]`, f, x));
    } else {
      checkScalar(fieldPath, f, v);
    }
  }
}

/** checkMessageJson for a job spec (the path starts at `spec`). */
export function checkJobSpecJson(spec: unknown): void {
  checkMessageJson("JobSpec", spec, "spec");
}
