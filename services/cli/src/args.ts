/** Thrown for a bad command line; the CLI prints the message and the command's usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

/** Parses `--key value`, `--key=value` and boolean `--flag` (when listed in `booleans`). */
export function parseArgs(argv: string[], booleans: readonly string[] = []): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags.set(key, a.slice(eq + 1));
      else if (booleans.includes(key) || key === "help") flags.set(key, true);
      else {
        const v = argv[i + 1];
        if (v === undefined || v.startsWith("--")) throw new UsageError(`--${key} needs a value`);
        flags.set(key, v);
        i++;
      }
    } else positional.push(a);
  }
  return { positional, flags };
}

export function flagString(a: ParsedArgs, key: string, def?: string): string | undefined {
  const v = a.flags.get(key);
  return v === undefined ? def : v === true ? "true" : v;
}

export function flagInt(a: ParsedArgs, key: string, def: number, min = 0): number {
  const v = a.flags.get(key);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer >= ${min}, got ${String(v)}`);
  return n;
}

export function flagFloat(a: ParsedArgs, key: string, def: number): number {
  const v = a.flags.get(key);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${key} must be a number, got ${String(v)}`);
  return n;
}

export function flagBool(a: ParsedArgs, key: string): boolean {
  return a.flags.get(key) === true || a.flags.get(key) === "true";
}
