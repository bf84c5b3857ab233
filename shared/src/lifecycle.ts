import type { Logger } from "./logger.js";

/**
 * Runs `stop` once on SIGINT/SIGTERM, then exits. A second signal exits at once.
 * Returns a function that triggers the same shutdown programmatically.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const run = () => {
    stopping ??= stop().then(
      () => logger.info("stopped"),
      (err: unknown) => {
        logger.error("shutdown failed", { err });
        process.exitCode = 1;
      },
    );
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
