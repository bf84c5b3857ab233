import * as grpc from "@grpc/grpc-js";
import { DEFAULT_MAX_MESSAGE_BYTES, HTTP2_CONNECTION_WINDOW_BYTES } from "./server.js";

export function clientOptions(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): grpc.ClientOptions {
  return {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.keepalive_time_ms": 30_000,
    // The windows this client grants servers (server-streamed GetWeights); see server.ts.
    "grpc-node.flow_control_window": HTTP2_CONNECTION_WINDOW_BYTES,
  };
}

type ClientCtor<C> = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

/** A client for `address` (host:port) with rlmesh's message-size limits. */
export function createClient<C>(Ctor: ClientCtor<C>, address: string, maxMessageBytes?: number): C {
  return new Ctor(address, grpc.credentials.createInsecure(), clientOptions(maxMessageBytes));
}

/** Promisified unary call: `await call(cb => client.getJob(req, {deadline}, cb))`. */
export function call<Res>(invoke: (cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** Resolves once the channel is ready, or rejects at the deadline. */
export function waitForReady(client: grpc.Client, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
  });
}

/** A Date `ms` from now, for call options. */
export function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}
