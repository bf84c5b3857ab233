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

/** Reconnect attempts a client command waits through (ioredis backs off 50 ms more per try). */
export const CLIENT_MAX_RETRIES_PER_REQUEST = 20;

/** Connection factory with the options BullMQ requires and an error handler attached. */
export function createRedis(url: string, opts: RedisConnectionOptions): Redis {
  const redis = new Redis(url, {
    // Clients ride out a Redis restart (~10 s of reconnect attempts) before a command fails.
    maxRetriesPerRequest: opts.role === "worker" ? null : CLIENT_MAX_RETRIES_PER_REQUEST,
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
