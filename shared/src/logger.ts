export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** Minimum level written. @defaultValue RLMESH_LOG_LEVEL or "info" */
  level?: LogLevel;
  /** Where lines go. @defaultValue process.stderr */
  write?: (line: string) => void;
}

function errorFields(v: unknown): unknown {
  return v instanceof Error ? { name: v.name, message: v.message, stack: v.stack } : v;
}

/** Structured JSON-lines logger: one object per line with time, level, service, msg. */
export function createLogger(service: string, opts: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const envLevel = process.env.RLMESH_LOG_LEVEL as LogLevel | undefined;
  const min = LEVELS[opts.level ?? (envLevel && envLevel in LEVELS ? envLevel : "info")];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const log = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < min) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level, service, msg, ...base };
    if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = errorFields(v);
    write(JSON.stringify(rec));
  };
  return {
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    child: (fields) => createLogger(service, opts, { ...base, ...fields }),
  };
}
