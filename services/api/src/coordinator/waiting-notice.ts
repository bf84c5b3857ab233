// A step that waits on a missing service says so: every WAITING_NOTICE_MS while a phase is
// pending, the service it needs is probed, and when it is missing a "waiting for …" event goes
// to the job (never silence while a rollout worker, an executor or the learner is away).

/** How often a waiting phase probes the service it needs and tells the job when it is missing. */
export const WAITING_NOTICE_MS = 10_000;

/** Answers which service `work` is waiting on when it is missing (in words), or null when it is there. */
export type MissingProbe = () => Promise<string | null>;

/**
 * Resolves like `work`; while it is pending, every `intervalMs` asks `missing` and, when a
 * service is missing, emits `waiting for <service>: <what> has waited N s`. A failing probe
 * counts as missing (it says why).
 */
export async function withWaitingNotices<T>(
  work: Promise<T>,
  what: string,
  missing: MissingProbe,
  emit: (message: string) => Promise<unknown>,
  intervalMs = WAITING_NOTICE_MS,
): Promise<T> {
  const t0 = Date.now();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void missing()
      .catch((err: unknown) => `its probe failed: ${(err as Error).message}`)
      .then(async (m) => {
        if (m !== null) await emit(`waiting for ${m}: ${what} has waited ${Math.round((Date.now() - t0) / 1000)} s`);
      })
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, intervalMs);
  timer.unref();
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}
