import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createClient,
  freePort,
  loadProto,
  type LearnerServiceClient,
  type StartJobRequestIn,
  type StartJobResponse,
  type TrainSampleIn,
  type TrainStepRequestIn,
  type TrainStepResponse,
} from "@rlmesh/shared";
import { startService, waitServing, type ServiceProcess } from "./helpers.js";

/** A learner process (services/learner/dist/main.js) with its own ports. */
export interface LearnerProcess {
  svc: ServiceProcess;
  address: string;
  metricsPort: number;
  client: LearnerServiceClient;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function startLearner(
  env: { modelDir: string; checkpointDir: string; redisUrl: string } & Record<string, string>,
): Promise<LearnerProcess> {
  const port = await freePort();
  const metricsPort = await freePort();
  const { modelDir, checkpointDir, redisUrl, ...rest } = env;
  const svc = startService("learner", {
    REDIS_URL: redisUrl,
    RLMESH_MODEL_DIR: modelDir,
    RLMESH_CHECKPOINT_DIR: checkpointDir,
    RLMESH_LEARNER_PORT: String(port),
    RLMESH_LEARNER_METRICS_PORT: String(metricsPort),
    // These tests are about pushes and resumes: no background compilation of the demo's batch
    // shapes (services/learner/src/trainer/warmup.test.ts tests the warm-up); a test may set it.
    RLMESH_LEARNER_WARMUP: "0",
    ...rest,
  });
  const address = `127.0.0.1:${port}`;
  await waitServing(address, 60_000, svc);
  const client = createClient<LearnerServiceClient>(loadProto().proto.rlmesh.v1.LearnerService, address);
  return {
    svc,
    address,
    metricsPort,
    client,
    stop: async (signal = "SIGTERM") => {
      client.close();
      return svc.stop(signal);
    },
  };
}

/** StartJob: the learner loads the job's model (or resumes it) and pushes it to the registered workers. */
export function startJob(client: LearnerServiceClient, req: StartJobRequestIn, timeoutMs = 120_000): Promise<StartJobResponse> {
  return new Promise((resolve, reject) => {
    client.startJob(req, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

export function trainStep(client: LearnerServiceClient, req: TrainStepRequestIn, timeoutMs = 120_000): Promise<TrainStepResponse> {
  return new Promise((resolve, reject) => {
    client.trainStep(req, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/**
 * A deterministic GRPO batch: `groups` prompts × `perGroup` responses of `responseLen` tokens
 * (EOS last), rewards alternating within each group so every group is informative.
 */
export function syntheticSamples(opts: {
  groups: number;
  perGroup: number;
  responseLen: number;
  policyVersion: number;
  /** The job whose policy "generated" them (the TrainStep's job). */
  jobId: string;
  eosId: number;
  salt?: number;
}): TrainSampleIn[] {
  const out: TrainSampleIn[] = [];
  const salt = opts.salt ?? 0;
  for (let g = 0; g < opts.groups; g++) {
    const prompt = Array.from({ length: 8 }, (_, j) => 10 + ((g * 7 + j * 3 + salt) % 200));
    for (let k = 0; k < opts.perGroup; k++) {
      const response = Array.from({ length: opts.responseLen - 1 }, (_, j) => 10 + ((g * 31 + k * 17 + j * 5 + salt) % 400));
      out.push({
        promptId: `p${g}`,
        promptTokenIds: prompt,
        responseTokenIds: [...response, opts.eosId],
        reward: (k + g) % 2,
        policyVersion: opts.policyVersion,
        policyJobId: opts.jobId,
      });
    }
  }
  return out;
}

export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
