import { FrameDecoder, encodeFrame, type SandboxRequest, type SandboxResponse, isSandboxResponse } from "./sandbox-protocol.js";
import { SandboxError } from "./sandbox-error.js";

/** Fork-server stderr kept for error messages (its own errors; candidates never write there). */
const SERVER_STDERR_CHARS = 2000;

interface Pending {
  id: string;
  resolve: (r: SandboxResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The executor's side of one fork server, whatever carries its stdin/stdout (a Docker attach
 * stream, the pipes of a bwrap process): the ready frame, one request at a time, a watchdog per
 * request, and the first failure, which is final (the sandbox must then be destroyed).
 */
export class ForkServerConnection {
  private pending: Pending | null = null;
  private serverStderr = "";
  private dead: Error | null = null;
  private readyWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private ready = false;
  private readonly decoder = new FrameDecoder();

  constructor(private readonly write: (frame: Buffer) => void) {}

  /** False once the fork server misbehaved or died. */
  get healthy(): boolean {
    return this.dead === null && this.ready;
  }

  /** Resolves on the fork server's ready frame; rejects after `timeoutMs` or on failure. */
  waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new SandboxError(`fork server not ready within ${timeoutMs} ms`)), timeoutMs);
      this.readyWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  onStderr(chunk: Buffer): void {
    this.serverStderr = (this.serverStderr + chunk.toString("utf8")).slice(-SERVER_STDERR_CHARS);
  }

  onStdout(chunk: Buffer): void {
    let frames: unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(new SandboxError(`bad frame from sandbox: ${(err as Error).message}`));
      return;
    }
    for (const frame of frames) {
      if (this.dead) return;
      if (!this.ready) {
        if (typeof frame === "object" && frame !== null && (frame as { ready?: unknown }).ready === true) {
          this.ready = true;
          this.readyWaiter?.resolve();
          this.readyWaiter = null;
        } else {
          this.fail(new SandboxError("sandbox spoke before it was ready"));
        }
        continue;
      }
      const p = this.pending;
      if (!p || !isSandboxResponse(frame) || frame.id !== p.id) {
        this.fail(new SandboxError("unexpected response from sandbox"));
        return;
      }
      this.pending = null;
      clearTimeout(p.timer);
      p.resolve(frame);
    }
  }

  /** Marks the fork server dead (first error wins) and rejects whoever waits on it. */
  fail(err: Error): void {
    if (this.dead) return;
    const detail = this.serverStderr.trim();
    this.dead = detail ? new SandboxError(`${err.message}; fork server stderr: ${detail}`) : err;
    this.readyWaiter?.reject(this.dead);
    this.readyWaiter = null;
    const p = this.pending;
    this.pending = null;
    if (p) {
      clearTimeout(p.timer);
      p.reject(this.dead);
    }
  }

  /**
   * Sends one request; resolves with the fork server's response. Rejects with SandboxError (and
   * the connection turns unhealthy) when it dies or does not answer within `watchdogMs`.
   */
  run(req: SandboxRequest, watchdogMs: number): Promise<SandboxResponse> {
    if (this.dead) return Promise.reject(this.dead);
    if (!this.ready) return Promise.reject(new SandboxError("sandbox not ready"));
    if (this.pending) return Promise.reject(new SandboxError("sandbox busy"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new SandboxError(`sandbox did not answer within ${watchdogMs} ms`)), watchdogMs);
      this.pending = { id: req.id, resolve, reject, timer };
      this.write(encodeFrame(req));
    });
  }
}
