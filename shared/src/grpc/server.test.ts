import assert from "node:assert/strict";
import { test } from "node:test";
import * as http2 from "node:http2";
import { createLogger } from "../logger.js";
import { loadProto } from "../proto.js";
import { HTTP2_CONNECTION_WINDOW_BYTES, HTTP2_STREAM_WINDOW_BYTES, startGrpcServer } from "./server.js";

test("a gRPC server announces large HTTP/2 windows (a client stream is not stopped every 64 KiB)", async () => {
  const { proto } = loadProto();
  const server = await startGrpcServer({
    port: 0,
    logger: createLogger("test", { level: "error" }),
    services: [{ name: "rlmesh.v1.RolloutService", definition: proto.rlmesh.v1.RolloutService.service, implementation: {} }],
  });
  const session = http2.connect(`http://${server.address}`);
  try {
    const settings = await new Promise<http2.Settings>((resolve, reject) => {
      session.once("remoteSettings", resolve);
      session.once("error", reject);
    });
    assert.equal(settings.initialWindowSize, HTTP2_STREAM_WINDOW_BYTES);
    // The connection window (raised by a WINDOW_UPDATE right after the server's SETTINGS).
    const deadline = Date.now() + 5000;
    while ((session.state.remoteWindowSize ?? 0) < HTTP2_CONNECTION_WINDOW_BYTES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(session.state.remoteWindowSize, HTTP2_CONNECTION_WINDOW_BYTES);
  } finally {
    session.destroy();
    await server.shutdown(100);
  }
});
