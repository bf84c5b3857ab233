/** Thrown for a bad command line; the message says what is wrong. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Minimal `--flag value` / `--switch` parser for the executor's commands. */
export function parseFlags(
  argv: string[],
  spec: { values: string[]; switches: string[] },
): { values: Map<string, string>; switches: Set<string> } {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") ? (eq > 0 ? arg.slice(2, eq) : arg.slice(2)) : undefined;
    if (name === undefined) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    if (spec.switches.includes(name)) {
      switches.add(name);
    } else if (spec.values.includes(name)) {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      values.set(name, v);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return { values, switches };
}

export function positiveInt(name: string, raw: string | undefined, fallback: number, max = Infinity): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  if (n > max) throw new UsageError(`--${name} must be at most ${max}, got ${n}`);
  return n;
}
