import { readFileSync } from "node:fs";

/** Thrown at start-up when a configuration value is missing or malformed. */
export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config ${key}: ${message}`);
    this.name = "ConfigError";
  }
}

interface BaseField {
  /** Environment variable that sets the value. */
  env: string;
  /** One line for the README's configuration table. */
  doc: string;
}
export interface StringField extends BaseField {
  type: "string";
  default?: string;
}
export interface IntField extends BaseField {
  type: "int";
  default?: number;
  min?: number;
  max?: number;
}
export interface FloatField extends BaseField {
  type: "float";
  default?: number;
  min?: number;
  max?: number;
}
export interface BoolField extends BaseField {
  type: "bool";
  default?: boolean;
}
export interface EnumField<V extends string = string> extends BaseField {
  type: "enum";
  values: readonly V[];
  default?: V;
}
export type Field = StringField | IntField | FloatField | BoolField | EnumField;
export type Schema = Record<string, Field>;

type ValueOf<F extends Field> = F extends StringField
  ? string
  : F extends IntField | FloatField
    ? number
    : F extends BoolField
      ? boolean
      : F extends { type: "enum"; values: readonly (infer V)[] }
        ? V
        : never;
export type ConfigOf<S extends Schema> = { [K in keyof S]: ValueOf<S[K]> };

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

function parseField(field: Field, raw: string): string | number | boolean {
  const key = field.env;
  switch (field.type) {
    case "string":
      return raw;
    case "bool": {
      const v = raw.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      throw new ConfigError(key, `expected a boolean (true/false/1/0), got ${JSON.stringify(raw)}`);
    }
    case "int":
    case "float": {
      const n = Number(raw.trim());
      const what = field.type === "int" ? "an integer" : "a number";
      if (raw.trim() === "" || !Number.isFinite(n) || (field.type === "int" && !Number.isInteger(n))) {
        throw new ConfigError(key, `expected ${what}, got ${JSON.stringify(raw)}`);
      }
      if (field.min !== undefined && n < field.min) throw new ConfigError(key, `expected ${what} >= ${field.min}, got ${n}`);
      if (field.max !== undefined && n > field.max) throw new ConfigError(key, `expected ${what} <= ${field.max}, got ${n}`);
      return n;
    }
    case "enum":
      if (!field.values.includes(raw)) {
        throw new ConfigError(key, `expected one of ${field.values.join(", ")}, got ${JSON.stringify(raw)}`);
      }
      return raw;
  }
}

function fileValue(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * Reads every field of `schema` from the environment (or, for keys absent there, from the JSON
 * file named by RLMESH_CONFIG_FILE, keyed by environment variable name), validates it once and
 * returns a typed, frozen object. Throws ConfigError naming the first bad variable.
 */
export function loadConfig<S extends Schema>(schema: S, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  let file: Record<string, unknown> = {};
  const filePath = env.RLMESH_CONFIG_FILE;
  if (filePath) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(filePath, "utf8"));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
      file = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError("RLMESH_CONFIG_FILE", `cannot read ${filePath}: ${(err as Error).message}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(schema)) {
    const fromEnv = env[field.env];
    const fromFile = file[field.env];
    const raw = fromEnv !== undefined && fromEnv !== "" ? fromEnv : fromFile !== undefined ? fileValue(fromFile) : undefined;
    if (raw === undefined) {
      if (field.default === undefined) throw new ConfigError(field.env, "is required but not set");
      out[name] = field.default;
    } else {
      out[name] = parseField(field, raw);
    }
  }
  return Object.freeze(out) as ConfigOf<S>;
}

/** Markdown rows (variable, default, description) for documentation. */
export function describeConfig(schema: Schema): string[] {
  return Object.values(schema).map(
    (f) => `| \`${f.env}\` | ${f.default === undefined ? "(required)" : `\`${String(f.default)}\``} | ${f.doc} |`,
  );
}
