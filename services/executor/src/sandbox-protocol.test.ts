import { test } from "node:test";
import assert from "node:assert/strict";
import { DockerStreamDemuxer, FrameDecoder, MAX_FRAME_BYTES, encodeFrame } from "./sandbox-protocol.js";

test("frames survive arbitrary chunking", () => {
  const bytes = Buffer.concat([encodeFrame({ a: 1 }), encodeFrame({ b: "ü".repeat(1000) })]);
  const d = new FrameDecoder();
  const got: unknown[] = [];
  for (let i = 0; i < bytes.length; i += 7) got.push(...d.push(bytes.subarray(i, i + 7)));
  assert.deepEqual(got, [{ a: 1 }, { b: "ü".repeat(1000) }]);
});

test("an oversized frame is refused", () => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  assert.throws(() => new FrameDecoder().push(head), /exceeds/);
});

test("docker's multiplexed stream is split into stdout and stderr", () => {
  const frame = (type: number, s: string) => {
    const h = Buffer.alloc(8);
    h[0] = type;
    h.writeUInt32BE(Buffer.byteLength(s), 4);
    return Buffer.concat([h, Buffer.from(s)]);
  };
  const out: string[] = [];
  const err: string[] = [];
  const d = new DockerStreamDemuxer(
    (c) => out.push(c.toString()),
    (c) => err.push(c.toString()),
  );
  const all = Buffer.concat([frame(1, "hello"), frame(2, "oops"), frame(1, "world")]);
  d.push(all.subarray(0, 10));
  d.push(all.subarray(10));
  assert.deepEqual(out, ["hello", "world"]);
  assert.deepEqual(err, ["oops"]);
});
