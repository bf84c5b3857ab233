import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./logger.js";

export interface RedisConnectionOptions {
  /**
   * "worker": blocking connections for BullMQ Workers/QueueEvents (BullMQ requires
   * `maxRetriesPerRequest: null`). "client": ordinary commands that fail fast.
   */
  role: "worker" | "client";
  logger?: Logger;
  /** Extra ioredis options. */
  options?: RedisOptions;
}

/** Connection factory with the options BullMQ requires and an error handler attached. */
export function createRedis(url: string, opts: RedisConnectionOptions): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: opts.role === "worker" ? null : 3,
    enableReadyCheck: true,
    lazyConnect: false,
    ...opts.options,
  });
  // Without a listener ioredis prints unhandled errors on every reconnect attempt.
  redis.on("error", (err: Error) => opts.logger?.warn("redis error", { err: err.message, url: redactUrl(url) }));
  return redis;
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(invalid url)";
  }
}
