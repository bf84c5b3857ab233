import type { Redis } from "ioredis";
import type { Logger } from "./logger.js";

/** How long close() waits for Redis to delete the entry (it expires by itself otherwise). */
export const REGISTRY_CLOSE_TIMEOUT_MS = 2000;

/** Registry entries expire unless refreshed within this many milliseconds. */
export const DEFAULT_REGISTRY_TTL_MS = 10_000;
const PREFIX = "rlmesh:workers";
/** Registry kind of rollout workers (the api finds them there, the learner pushes to them). */
export const ROLLOUT_WORKER_KIND = "rollout";

/**
 * The channel on which workers of `kind` announce (PUBLISH, the worker's id) that they registered
 * or deregistered, so that a process caching the list (the learner's weight pusher) knows to look
 * again. A crashed worker's entry expires without a notice.
 */
export const workersChangedChannel = (kind: string): string => `${PREFIX}-changed:${kind}`;

export interface WorkerEntry {
  id: string;
  /** host:port other services dial. */
  address: string;
  /** Extra facts (policy version, execution provider, …). */
  meta?: Record<string, string | number>;
  updatedAtMs?: number;
}

export interface Registration {
  /** Refreshes now (e.g. after a weight swap, to publish the new version). */
  refresh(meta?: Record<string, string | number>): Promise<void>;
  /** Stops the heartbeat and removes the entry. */
  close(): Promise<void>;
}

/**
 * Registers a live worker of `kind` (e.g. "rollout") in Redis with a TTL heartbeat, so that
 * coordinators find every live worker and forget crashed ones within the TTL.
 */
export async function registerWorker(
  redis: Redis,
  kind: string,
  entry: WorkerEntry,
  opts: { ttlMs?: number; logger?: Logger } = {},
): Promise<Registration> {
  const ttl = opts.ttlMs ?? DEFAULT_REGISTRY_TTL_MS;
  let meta = entry.meta ?? {};
  const key = `${PREFIX}:${kind}:${entry.id}`;
  const write = async () => {
    const value: WorkerEntry = { id: entry.id, address: entry.address, meta, updatedAtMs: Date.now() };
    await redis.set(key, JSON.stringify(value), "PX", ttl);
  };
  await write();
  const announce = () =>
    redis.publish(workersChangedChannel(kind), entry.id).then(
      () => undefined,
      (err: unknown) => opts.logger?.warn("registry change notice failed", { err, kind, id: entry.id }),
    );
  await announce();
  const timer = setInterval(
    () => {
      write().catch((err: unknown) => opts.logger?.warn("registry heartbeat failed", { err, kind, id: entry.id }));
    },
    Math.max(100, Math.floor(ttl / 3)),
  );
  timer.unref();
  return {
    // Never rejects: a write that fails (Redis down) is logged and the heartbeat writes the new
    // meta on its next beat. A rejected refresh used to crash a rollout worker after a weight swap.
    refresh: async (m) => {
      if (m) meta = { ...meta, ...m };
      await write().catch((err: unknown) => opts.logger?.warn("registry refresh failed; the heartbeat retries", { err, kind, id: entry.id }));
    },
    // Bounded: with Redis down the entry expires by itself (TTL), so shutdown does not wait on it.
    close: async () => {
      clearInterval(timer);
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([
        redis.del(key).then(announce, (err: unknown) => opts.logger?.warn("registry close failed; the entry expires by itself", { err, kind, id: entry.id })),
        new Promise<void>((r) => (timeout = setTimeout(r, REGISTRY_CLOSE_TIMEOUT_MS))),
      ]);
      clearTimeout(timeout);
    },
  };
}

/** Every live worker of `kind`, ordered by id. */
export async function listWorkers(redis: Redis, kind: string): Promise<WorkerEntry[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", `${PREFIX}:${kind}:*`, "COUNT", 200);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== "0");
  if (keys.length === 0) return [];
  const values = await redis.mget(keys);
  return values
    .filter((v): v is string => v !== null)
    .map((v) => JSON.parse(v) as WorkerEntry)
    .sort((a, b) => (a.id < b.id ? -1 : 1));
}
