import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { checkHealth, createClient, freePort, loadProto, type RolloutServiceClient } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";


export interface ServiceProcess {
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Runs a service's built main.js as a child process with the given environment. */
export function startService(service: string, env: Record<string, string>): ServiceProcess {
  const proc = spawn(process.execPath, [join(REPO_ROOT, "services", service, "dist", "main.js")], {
    env: { ...process.env, RLMESH_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, sig) => resolve(code ?? sig ?? -1)));
  return {
    proc,
    output: () => out,
    exited,
    stop: (signal = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Polls the gRPC health check until SERVING or the timeout. */
export async function waitServing(address: string, timeoutMs = 20_000, svc?: ServiceProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (svc && svc.proc.exitCode !== null) throw new Error(`service exited early:\n${svc.output()}`);
    last = await checkHealth(address, "", 1000).catch((e: Error) => e.message);
    if (last === "SERVING") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${address} not SERVING after ${timeoutMs} ms (last: ${last})${svc ? `\n${svc.output()}` : ""}`);
}

/** A rollout worker process serving `modelDir` on a free loopback port, registered in `redisUrl`, SERVING. */
export async function startRolloutWorker(
  redisUrl: string,
  workerId: string,
  modelDir: string,
): Promise<{ svc: ServiceProcess; addr: string; client: RolloutServiceClient }> {
  const port = await freePort();
  const svc = startService("rollout", {
    REDIS_URL: redisUrl,
    RLMESH_ROLLOUT_PORT: String(port),
    RLMESH_ROLLOUT_METRICS_PORT: "0",
    RLMESH_WORKER_ID: workerId,
    RLMESH_MODEL_DIR: modelDir,
    RLMESH_ORT_THREADS: "1",
    RLMESH_LEARNER_ADDR: `127.0.0.1:${await freePort()}`,
  });
  const addr = `127.0.0.1:${port}`;
  await waitServing(addr, 60_000, svc);
  return { svc, addr, client: createClient(loadProto().proto.rlmesh.v1.RolloutService, addr) };
}

/** Lists the services a server exposes through gRPC reflection (v1). */
export async function reflectServices(address: string): Promise<string[]> {
  const protoPath = join(
    REPO_ROOT,
    "node_modules",
    "@grpc",
    "reflection",
    "build",
    "proto",
    "grpc",
    "reflection",
    "v1",
    "reflection.proto",
  );
  const def = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: {
      reflection: {
        v1: {
          ServerReflection: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & {
            ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, { list_services_response?: { service: { name: string }[] } }>;
          };
        };
      };
    };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on("data", (msg) => {
        resolve((msg.list_services_response?.service ?? []).map((s: { name: string }) => s.name));
        stream.end();
      });
      stream.on("error", reject);
      stream.write({ list_services: "" });
    });
  } finally {
    client.close();
  }
}
