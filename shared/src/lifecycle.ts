import type { Logger } from "./logger.js";

/**
 * The longest a graceful stop may take before the process exits anyway (an executor lets its
 * in-flight candidates finish: up to their 30 s budget by default).
 */
export const SHUTDOWN_HARD_LIMIT_MS = 60_000;

/**
 * Runs `stop` once on SIGINT/SIGTERM, then exits; after `hardLimitMs` it exits anyway (code 1,
 * logged). A second signal exits at once. Returns a function that triggers the same shutdown
 * programmatically.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>, hardLimitMs = SHUTDOWN_HARD_LIMIT_MS): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const run = () => {
    // A graceful stop that cannot finish (Redis down: in-flight results cannot be recorded, and
    // the queue hands those jobs to another worker anyway) must not hang the process forever.
    let limit: NodeJS.Timeout | undefined;
    const bounded = new Promise<void>((resolve) => {
      limit = setTimeout(() => {
        logger.error("graceful shutdown did not finish in time (is Redis or a peer down?); exiting", { limitMs: hardLimitMs });
        process.exitCode = 1;
        resolve();
      }, hardLimitMs);
      limit.unref();
    });
    stopping ??= Promise.race([
      stop().then(
        () => logger.info("stopped"),
        (err: unknown) => {
          logger.error("shutdown failed", { err });
          process.exitCode = 1;
        },
      ),
      bounded,
    ]).finally(() => clearTimeout(limit));
    return stopping;
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (stopping) {
        logger.warn("second signal, exiting now", { signal: sig });
        process.exit(1);
      }
      logger.info("shutting down", { signal: sig });
      void run().then(() => process.exit());
    });
  }
  return run;
}
