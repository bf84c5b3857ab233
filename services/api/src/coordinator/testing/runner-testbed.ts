// What the coordinator's tests share: a private Redis (real job state and events), a three-task
// dataset, and a rollout pool faked at its seam (one sample per prompt and group index).
import { after, before } from "node:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { createRedis, startLocalRedis, type Job, type LocalRedis } from "@rlmesh/shared";
import type { RolloutPool } from "../rollout-pool.js";
import type { Coordinator } from "../coordinator.js";
import type { JobStore } from "../../job-store.js";
import type { NormalizedJobSpec } from "../../job-spec.js";

export interface RunnerTestbed {
  /** A Redis client of the private server (valid between the suite's hooks). */
  readonly conn: Redis;
  /** A folder standing in for the model directory, holding the dataset. */
  readonly dir: string;
  /** tasks.jsonl: three rows t1..t3, each with one assert. */
  readonly dataset: string;
}

/** Registers before/after hooks for a private Redis and writes the dataset; returns accessors. */
export function runnerTestbed(name: string): RunnerTestbed {
  const dir = mkdtempSync(join(tmpdir(), `rlmesh-${name}-`));
  const dataset = join(dir, "tasks.jsonl");
  writeFileSync(
    dataset,
    [1, 2, 3]
      .map((k) =>
        JSON.stringify({
          task_id: `t${k}`,
          prompt: `Write f(x) returning x+${k}.`,
          tests: { kind: "assert", tests: [`assert f(1) == ${1 + k}`] },
        }),
      )
      .join("\n") + "\n",
  );
  const bed = { dir, dataset } as { conn: Redis; redis: LocalRedis; dir: string; dataset: string };
  before(async () => {
    bed.redis = await startLocalRedis();
    bed.conn = createRedis(bed.redis.url, { role: "client" });
  });
  after(async () => {
    await bed.conn?.quit();
    await bed.redis?.stop();
  });
  return bed;
}

/** A rollout pool with one worker; sample k of a prompt has response ids `responseIds(k)`. */
export function fakeRollout(responseIds: (k: number) => number[] = () => [2, 3]): RolloutPool {
  return {
    workers: async () => [{ id: "w0" }],
    waitForWorkers: async () => [{ id: "w0" }],
    generate: async (prompts: { id: string }[], g: number) => ({
      samples: prompts.flatMap((p) =>
        Array.from({ length: g }, (_, k) => ({
          promptId: p.id,
          sampleIndex: k,
          promptTokenIds: [1],
          tokenIds: responseIds(k),
          text: `r${k}`,
          policyVersion: 0,
        })),
      ),
    }),
  } as unknown as RolloutPool;
}

/**
 * Creates a job of `spec`, starts it on `coord` and polls (every 25 ms, up to `polls` times) until
 * it SUCCEEDED or FAILED; stops the coordinator either way. Throws when it did not finish.
 */
export async function runJobToEnd(store: JobStore, coord: Coordinator, spec: NormalizedJobSpec, polls = 400) {
  return runToEnd(store, coord, await store.create(spec), polls);
}

/** runJobToEnd for a job already stored (one another coordinator ran part of: a restarted api taking it over). */
export async function runToEnd(store: JobStore, coord: Coordinator, job: Job, polls = 400) {
  coord.start(job);
  try {
    for (let i = 0; i < polls; i++) {
      const j = await store.get(job.id);
      if (j && (j.state === "JOB_STATE_SUCCEEDED" || j.state === "JOB_STATE_FAILED"))
        return { job: j, events: await store.readEvents(job.id, 0) };
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    await coord.stop();
  }
  throw new Error("job did not finish");
}
