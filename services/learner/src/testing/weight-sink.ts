import { createServer, type Server } from "node:net";
import type * as grpc from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import {
  createClient,
  GrpcError,
  loadProto,
  registerWorker,
  ROLLOUT_WORKER_KIND,
  startGrpcServer,
  WeightAssembler,
  type GrpcServerHandle,
  type HostTensor,
  type LearnerServiceClient,
  type Logger,
  type Registration,
  type UpdateWeightsResponseIn,
  type WeightChunk,
} from "@rlmesh/shared";
import { status as grpcStatus } from "@grpc/grpc-js";
import { acceptsPolicy, formatPolicy, type PolicyRef } from "@rlmesh/shared/weights";
import { receiveUpdateWeights, WeightDataReceiver, type DirectPushReply, type ReceivedWeights } from "@rlmesh/shared/weight-data";

/**
 * A stand-in rollout worker that only takes weights: RolloutService.UpdateWeights over the real
 * WeightAssembler (checksum-verified), catch-up through LearnerService.GetWeights at start-up,
 * and registration in Redis as kind "rollout". The learner's push test and benchmark use it so
 * they exercise the real wire path without onnxruntime. Generate is not implemented.
 */

export interface WeightSinkOptions {
  id: string;
  logger: Logger;
  /** @defaultValue 0 (a free port) */
  port?: number;
  /** Registers as a rollout worker here (and refreshes `policy_version` after each swap). */
  redis?: Redis;
  /** Fetches the latest weights from this learner at start-up (as a real worker does). */
  learnerAddr?: string;
}

export interface WeightSink {
  id: string;
  address: string;
  port: number;
  /** Version held now (-1 before any). */
  version(): number;
  /** The job of the version held ("" before any). */
  jobId(): string;
  tensors(): HostTensor[];
  /** Weight versions received (pushes and catch-ups). */
  swaps(): number;
  /** Stops serving (registration left in place unless `deregister`, like a crashed worker). */
  stop(deregister?: boolean): Promise<void>;
}

export async function startWeightSink(opts: WeightSinkOptions): Promise<WeightSink> {
  let version = -1;
  let jobId = "";
  let tensors: HostTensor[] = [];
  let swaps = 0;
  let registration: Registration | undefined;
  // Its own kept data connections (several sinks may share a process; each is one worker).
  const receiver = new WeightDataReceiver();
  const install = (p: PolicyRef, t: HostTensor[]) => {
    version = p.version;
    jobId = p.jobId;
    tensors = t;
    swaps++;
    // Published in the background after the reply is on its way (refresh never rejects): the reply
    // does not wait for Redis, as a rollout worker's UpdateWeights reply does not (the rollout
    // worker publishes its version on catch-ups and heartbeats only).
    setImmediate(() => void registration?.refresh({ policy_version: p.version, policy_job_id: p.jobId }));
  };
  const apply = async (got: ReceivedWeights, t0: number): Promise<DirectPushReply> => {
    if (!acceptsPolicy(got, { jobId, version }))
      return { accepted: false, version, jobId, message: `already at ${formatPolicy({ jobId, version })}`, bytesReceived: got.received, swapSeconds: 0 };
    install(got, got.tensors);
    return { accepted: true, version, jobId, message: "ok", bytesReceived: got.received, swapSeconds: (performance.now() - t0) / 1000 };
  };
  const updateWeights = (
    call: grpc.ServerReadableStream<WeightChunk, UpdateWeightsResponseIn>,
    cb: grpc.sendUnaryData<UpdateWeightsResponseIn>,
  ) => {
    void (async () => {
      const t0 = performance.now();
      // Both transports, as the rollout worker: chunks on the stream or a tcp-v1 data connection
      // (and direct pushes on it, applied the same way).
      cb(null, await apply(await receiveUpdateWeights(call, receiver, apply), t0));
    })().catch((err: Error) =>
      cb((err instanceof GrpcError ? err : new GrpcError(grpcStatus.INVALID_ARGUMENT, `weights: ${err.message}`)) as unknown as grpc.ServiceError),
    );
  };
  const { proto } = loadProto();
  const server: GrpcServerHandle = await startGrpcServer({
    port: opts.port ?? 0,
    logger: opts.logger,
    services: [
      {
        name: "rlmesh.v1.RolloutService",
        definition: proto.rlmesh.v1.RolloutService.service,
        implementation: { UpdateWeights: updateWeights },
      },
    ],
  });
  if (opts.learnerAddr) {
    // A learner with no job started has no weights to give (FAILED_PRECONDITION): keep none.
    const got = await fetchWeights(opts.learnerAddr).catch((err: { code?: number }) => {
      if (err.code === grpcStatus.FAILED_PRECONDITION) return null;
      throw err;
    });
    if (got) install(got, got.tensors);
  }
  if (opts.redis)
    registration = await registerWorker(opts.redis, ROLLOUT_WORKER_KIND, {
      id: opts.id,
      address: server.address,
      meta: { policy_version: version, policy_job_id: jobId },
    });
  return {
    id: opts.id,
    address: server.address,
    port: server.port,
    version: () => version,
    jobId: () => jobId,
    tensors: () => tensors,
    swaps: () => swaps,
    stop: async (deregister = false) => {
      server.server.forceShutdown();
      receiver.close();
      if (deregister) await registration?.close();
    },
  };
}

/** The learner's latest weights through GetWeights (checksum-verified). */
export async function fetchWeights(learnerAddr: string, timeoutMs = 60_000): Promise<{ version: number; jobId: string; tensors: HostTensor[] }> {
  const client = createClient<LearnerServiceClient>(loadProto().proto.rlmesh.v1.LearnerService, learnerAddr);
  try {
    return await new Promise((resolve, reject) => {
      const asm = new WeightAssembler();
      const stream = client.getWeights({ minVersion: 0 }, { deadline: new Date(Date.now() + timeoutMs) });
      stream.on("data", (c: WeightChunk) => {
        try {
          asm.add(c);
        } catch (err) {
          stream.cancel();
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      stream.on("error", reject);
      stream.on("end", () => {
        try {
          resolve(asm.finish());
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  } finally {
    client.close();
  }
}

/** A raw TCP sink for loopback bandwidth: counts bytes until the sender ends, then answers "ok". */
export async function startTcpSink(): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((sock) => {
    sock.on("data", () => undefined);
    sock.on("end", () => sock.end("ok"));
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
