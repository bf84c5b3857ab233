import { DatasetError } from "./dataset-error.js";

/** Field readers that throw DatasetError naming the line and the field. */
export class RowFields {
  constructor(
    readonly row: Record<string, unknown>,
    readonly line: number,
    readonly file?: string,
  ) {}

  fail(field: string, detail: string): never {
    throw new DatasetError(this.line, field, detail, this.file);
  }

  has(field: string): boolean {
    return this.row[field] !== undefined && this.row[field] !== null;
  }

  string(field: string): string {
    const v = this.row[field];
    if (typeof v !== "string") this.fail(field, v === undefined ? "is missing" : `expected a string, got ${describe(v)}`);
    return v;
  }

  optionalString(field: string): string | undefined {
    return this.has(field) ? this.string(field) : undefined;
  }

  /** A string or a number (task ids are numbers in MBPP). */
  id(field: string): string {
    const v = this.row[field];
    if (typeof v === "number" && Number.isFinite(v)) return String(v);
    if (typeof v === "string" && v.length > 0) return v;
    this.fail(field, v === undefined ? "is missing" : `expected a non-empty string or number, got ${describe(v)}`);
  }

  stringArray(field: string): string[] {
    const v = this.row[field];
    if (!Array.isArray(v)) this.fail(field, v === undefined ? "is missing" : `expected a list of strings, got ${describe(v)}`);
    v.forEach((x, i) => {
      if (typeof x !== "string") this.fail(`${field}[${i}]`, `expected a string, got ${describe(x)}`);
    });
    return v as string[];
  }
}

export function describe(v: unknown): string {
  if (v === undefined) return "nothing (the field is missing)";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)?.slice(0, 40)}`;
}
