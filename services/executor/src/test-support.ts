// Helpers shared by the executor's Docker/Redis tests (not a test file itself).
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import Docker from "dockerode";
import { type Job, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { createRedis } from "@rlmesh/shared";
import type { TestSpec } from "@rlmesh/shared/datasets/index";
import { type RewardJobData, enqueueRewardJobs, rewardJobId } from "@rlmesh/shared/reward/reward-jobs";
import type { RewardResult } from "@rlmesh/shared/reward/reward-result";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";


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
