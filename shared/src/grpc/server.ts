import type * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Logger } from "../logger.js";
import { toServiceError } from "./errors.js";
import { addReflection, defaultDescriptorIndex, descriptorSetPath } from "./reflection.js";

/** Largest gRPC message accepted or sent, both ends (weight chunks and big batches fit). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** How long a graceful shutdown waits for in-flight calls before forcing. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
const HEALTH_SERVICE = "grpc.health.v1.Health";

export interface ServiceBinding {
  /** Fully-qualified name, e.g. rlmesh.v1.JobService (used for health status). */
  name: string;
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  services: ServiceBinding[];
  /** @defaultValue "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  logger: Logger;
  /** @defaultValue DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
}

export interface GrpcServerHandle {
  server: grpc.Server;
  port: number;
  address: string;
  setServing(status: ServingStatus): void;
  /** NOT_SERVING, tryShutdown, then forceShutdown after `graceMs`. Resolves when closed. */
  shutdown(graceMs?: number): Promise<void>;
}

export function serverOptions(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): grpc.ServerOptions {
  return {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.keepalive_permit_without_calls": 1,
  };
}

/**
 * HTTP/2 flow control of every gRPC endpoint, both ends. Node's defaults (a 64 KiB window per
 * stream and per connection) let a client-streamed UpdateWeights send 64 KiB ahead of what the
 * worker has read, then wait for its WINDOW_UPDATE: a round trip per 32–64 KiB, which on a network
 * link (or a busy machine, where the reader is not scheduled at once) caps the stream far below
 * the link. With these the sender may run 16 MiB ahead. Memory stays bounded: a window is credit
 * the peer may send ahead of what the reader consumed. The frame size stays Node's (16 KiB) so a
 * push does not hold other calls on the connection behind large frames.
 */
export const HTTP2_STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
export const HTTP2_CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;

/** The part of grpc-js' Server this file reaches into: its HTTP/2 servers (not in its typings). */
interface GrpcServerInternals {
  http2Servers?: Map<http2.Http2Server, unknown>;
}

/**
 * grpc-js (1.14) has no server option for HTTP/2 windows (its client has
 * `grpc-node.flow_control_window`), so set them on the HTTP/2 servers it created: the SETTINGS
 * each new connection announces (stream window) and the connection window. Returns
 * false (and changes nothing) if grpc-js no longer exposes them.
 */
export function tuneHttp2Server(server: grpc.Server): boolean {
  const servers = (server as unknown as GrpcServerInternals).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const h2 of servers.keys()) {
    if (typeof h2.updateSettings !== "function") return false;
    h2.updateSettings({ initialWindowSize: HTTP2_STREAM_WINDOW_BYTES });
    h2.on("session", (session: http2.ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW_BYTES);
      } catch {
        // A session already closing: nothing to tune.
      }
    });
  }
  return true;
}

/** Starts a gRPC server with the given services plus health checking and reflection. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServerHandle> {
  const host = opts.host ?? "127.0.0.1";
  const server = new grpc.Server(serverOptions(opts.maxMessageBytes));
  for (const s of opts.services) server.addService(s.definition, s.implementation);

  const status: Record<string, ServingStatus> = { "": "SERVING" };
  for (const s of opts.services) status[s.name] = "SERVING";
  const health = new HealthImplementation(status);
  health.addToServer(server);
  // Reflection lists exactly what this server serves (its services, health, reflection) and
  // serves the real file descriptors of proto/ (shared/src/grpc/reflection.ts).
  try {
    addReflection(server, defaultDescriptorIndex(), [...opts.services.map((s) => s.name), HEALTH_SERVICE]);
  } catch (err) {
    opts.logger.error("grpc reflection disabled", { descriptorSet: descriptorSetPath(), err: (err as Error).message });
  }

  const bindHost = host.includes(":") ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const address = `${bindHost}:${port}`;
  if (!tuneHttp2Server(server)) opts.logger.warn("grpc server: cannot tune HTTP/2 windows (grpc-js internals changed); large streams will be slower");
  opts.logger.info("grpc server listening", { address, services: opts.services.map((s) => s.name) });

  const setServing = (st: ServingStatus) => {
    health.setStatus("", st);
    for (const s of opts.services) health.setStatus(s.name, st);
  };
  let closing: Promise<void> | undefined;
  const shutdown = (graceMs = DEFAULT_SHUTDOWN_GRACE_MS) => {
    closing ??= new Promise<void>((resolve) => {
      setServing("NOT_SERVING");
      const timer = setTimeout(() => {
        opts.logger.warn("grace period over, forcing grpc shutdown", { graceMs });
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return closing;
  };
  return { server, port, address, setServing, shutdown };
}

/**
 * Wraps an async unary handler: its result is the response, anything it throws becomes a gRPC
 * status (GrpcError keeps its code; other errors are INTERNAL and logged).
 */
export function unary<Req, Res>(
  logger: Logger,
  method: string,
  fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === grpc.status.INTERNAL) logger.error("handler failed", { method, err });
        callback(se);
      },
    );
  };
}

/** Wraps an async server-streaming handler; the stream ends when the promise settles. */
export function serverStream<Req, Res>(
  logger: Logger,
  method: string,
  fn: (call: grpc.ServerWritableStream<Req, Res>) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    fn(call).then(
      () => call.end(),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === grpc.status.INTERNAL) logger.error("stream handler failed", { method, err });
        // emit("error") sends the status to the client; destroy() would drop it.
        call.emit("error", se);
      },
    );
  };
}

/** Wraps an async client-streaming handler. */
export function clientStream<Req, Res>(
  logger: Logger,
  method: string,
  fn: (call: grpc.ServerReadableStream<Req, Res>) => Promise<Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    fn(call).then(
      (res) => callback(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === grpc.status.INTERNAL) logger.error("handler failed", { method, err });
        callback(se);
      },
    );
  };
}
