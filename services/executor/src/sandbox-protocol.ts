import type { TestSpec } from "@rlmesh/shared/datasets/index";

/** Frames to and from the fork server: 4-byte big-endian length + UTF-8 JSON. */
export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), "utf8");
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** Largest frame accepted from a sandbox. */
export const MAX_FRAME_BYTES = 8 << 20;

/** Incremental decoder of length-prefixed frames. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the complete frames decoded so far. Throws on an oversized frame. */
  push(chunk: Buffer): unknown[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: unknown[] = [];
    while (this.buf.length >= 4) {
      const size = this.buf.readUInt32BE(0);
      if (size > MAX_FRAME_BYTES) throw new Error(`frame of ${size} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (this.buf.length < 4 + size) break;
      out.push(JSON.parse(this.buf.subarray(4, 4 + size).toString("utf8")));
      this.buf = this.buf.subarray(4 + size);
    }
    return out;
  }
}

/**
 * Splits Docker's multiplexed attach stream (8-byte headers: stream type, 3 zero bytes,
 * big-endian length) into stdout and stderr payloads.
 */
export class DockerStreamDemuxer {
  private buf: Buffer = Buffer.alloc(0);
  constructor(
    private readonly onStdout: (chunk: Buffer) => void,
    private readonly onStderr: (chunk: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 8) {
      const type = this.buf[0];
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      const payload = this.buf.subarray(8, 8 + size);
      this.buf = this.buf.subarray(8 + size);
      if (type === 2) this.onStderr(payload);
      else this.onStdout(payload);
    }
  }
}

/** Limits as the fork server reads them. */
export interface ServerLimits {
  test_timeout_ms: number;
  total_timeout_ms: number;
  memory_mb: number;
  file_size_mb: number;
  max_open_files: number;
  output_limit_bytes: number;
}

export interface SandboxRequest {
  id: string;
  code: string;
  tests: TestSpec;
  limits: ServerLimits;
}

/** What the fork server answers; status as in RewardStatus. */
export interface SandboxResponse {
  id: string;
  status: string;
  tests_run: number;
  tests_passed: number;
  tests_total: number;
  duration_ms: number;
  stderr_tail: string;
  detail: string;
}

export function isSandboxResponse(v: unknown): v is SandboxResponse {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.id === "string" && typeof o.status === "string" && typeof o.tests_run === "number" && typeof o.tests_passed === "number";
}
