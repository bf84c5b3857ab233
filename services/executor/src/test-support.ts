// Helpers shared by the executor's Docker/bwrap/Redis tests (not a test file itself).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, test as nodeTest } from "node:test";
import { resolve } from "node:path";
import Docker from "dockerode";
import { type Job, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { createRedis, type LocalRedis, startLocalRedis } from "@rlmesh/shared";
import { Registry } from "prom-client";
import type { TestSpec } from "@rlmesh/shared/datasets/index";
import { type RewardJobData, enqueueRewardJobs, rewardJobId } from "@rlmesh/shared/reward/reward-jobs";
import type { RewardResult } from "@rlmesh/shared/reward/reward-result";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { DEFAULT_BWRAP } from "./bwrap-sandbox.js";
import { SANDBOX_OWNER_LABEL } from "./docker-sandbox.js";
import { type RunningExecutor, startExecutor } from "./executor.js";
import { SANDBOX_BACKENDS, type SandboxBackendName } from "./sandbox-backend.js";
export { withSandboxBackend } from "./sandbox-backend.js";


/**
 * Fails loudly (never skips) when dockerd is unreachable; builds the sandbox image when it is
 * missing or its harness is stale (build-image.sh is idempotent and ~1 s when up to date).
 */
export async function requireDockerAndImage(): Promise<Docker> {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`these tests need Docker: cannot reach dockerd (${(err as Error).message})`);
  }
  execFileSync("bash", [resolve(REPO_ROOT, "deploy/sandbox/build-image.sh")], { stdio: ["ignore", "ignore", "inherit"] });
  return docker;
}

/** A queue plus its events, for submitting candidates and reading their recorded results. */
export class QueueClient {
  readonly queue: Queue;
  readonly events: QueueEvents;
  private readonly connections: Redis[];
  private seq = 0;

  constructor(redisUrl: string, queueName: string) {
    this.connections = [createRedis(redisUrl, { role: "client" }), createRedis(redisUrl, { role: "worker" })];
    this.queue = new Queue(queueName, { connection: this.connections[0]! });
    this.events = new QueueEvents(queueName, { connection: this.connections[1]! });
  }

  async ready(): Promise<void> {
    await this.events.waitUntilReady();
  }

  /** Enqueues one candidate and waits for its result. */
  async score(response: string, tests: TestSpec, limits?: RewardJobData["limits"], timeoutMs = 60_000): Promise<RewardResult> {
    const job = await this.submit(response, tests, limits);
    return (await job.waitUntilFinished(this.events, timeoutMs)) as RewardResult;
  }

  async submit(response: string, tests: TestSpec, limits?: RewardJobData["limits"]): Promise<Job> {
    const data: RewardJobData = {
      job_id: `t${process.pid}`,
      step: 0,
      sample_index: this.seq++,
      problem_id: "p",
      response,
      tests,
      ...(limits ? { limits } : {}),
    };
    const [job] = await enqueueRewardJobs(this.queue, [data]);
    if (!job || job.id !== rewardJobId(data.job_id, data.step, data.sample_index)) throw new Error("enqueue failed");
    return job;
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
    await Promise.allSettled(this.connections.map((c) => c.quit()));
  }
}

/** A response with the program in a fenced block. */
export function fenced(program: string): string {
  return "Here is my solution:\n```python\n" + program + "\n```\n";
}

/**
 * The backends the sandbox suites run against: both, unless RLMESH_TEST_SANDBOX_BACKENDS names
 * a subset (comma-separated) for a quick local run. CI runs both.
 */
export function backendsUnderTest(env: NodeJS.ProcessEnv = process.env): SandboxBackendName[] {
  const only = env.RLMESH_TEST_SANDBOX_BACKENDS;
  if (!only) return [...SANDBOX_BACKENDS];
  const names = only.split(",").map((s) => s.trim());
  for (const n of names)
    if (!(SANDBOX_BACKENDS as readonly string[]).includes(n)) throw new Error(`RLMESH_TEST_SANDBOX_BACKENDS: unknown backend ${n}`);
  return names as SandboxBackendName[];
}

/** node:test's `test`, registering each test with the backend in its name. */
export function backendTest(backend: SandboxBackendName): typeof nodeTest {
  const wrapped = ((name: string, ...rest: unknown[]) =>
    (nodeTest as unknown as (...a: unknown[]) => Promise<void>)(`${name} [${backend}]`, ...rest)) as unknown as typeof nodeTest;
  return wrapped;
}

/** Fails loudly (never skips) when the backend cannot run here; Docker: builds the image. */
export async function requireBackend(backend: SandboxBackendName): Promise<void> {
  if (backend === "docker") {
    await requireDockerAndImage();
    return;
  }
  if (!existsSync(DEFAULT_BWRAP)) throw new Error(`these tests need bubblewrap: ${DEFAULT_BWRAP} is missing (apt-get install bubblewrap)`);
}

/**
 * Ids of an executor's live sandboxes: Docker asks dockerd for the owner's running containers,
 * bwrap the pool (a bwrap sandbox that died is replaced under a new id).
 */
export async function sandboxIdsOf(executor: RunningExecutor, owner: string): Promise<string[]> {
  if (executor.backend.name === "docker") {
    const list = await new Docker().listContainers({ filters: { label: [`${SANDBOX_OWNER_LABEL}=${owner}`] } });
    return list.map((c) => c.Id).sort();
  }
  return executor.pool.ids();
}

/** What an executor fixture gives a suite (valid between its before and after hooks). */
export interface ExecutorFixture {
  readonly redis: LocalRedis;
  readonly executor: RunningExecutor;
  readonly client: QueueClient;
  readonly registry: Registry;
}

/**
 * Registers before/after hooks that start a private Redis, one executor (concurrency 1) on
 * `backend` with the id `owner`, and a queue client; stops them after the suite. Fails loudly
 * when the backend cannot run here.
 */
export function executorFixture(queue: string, backend: SandboxBackendName, owner: string): ExecutorFixture {
  const f = {} as { redis: LocalRedis; executor: RunningExecutor; client: QueueClient; registry: Registry };
  before(async () => {
    await requireBackend(backend);
    f.redis = await startLocalRedis();
    f.registry = new Registry();
    f.executor = await startExecutor({ redisUrl: f.redis.url, queueName: queue, concurrency: 1, executorId: owner, backend, registry: f.registry });
    f.client = new QueueClient(f.redis.url, queue);
    await f.client.ready();
  });
  after(async () => {
    await f.client?.close();
    await f.executor?.close();
    await f.redis?.stop();
  });
  return f;
}
