import type * as grpc from "@grpc/grpc-js";

type AnyCall =
  grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>;

/** Milliseconds until the caller's deadline (Infinity when it set none). */
export function msUntilDeadline(call: AnyCall): number {
  const d = call.getDeadline();
  if (d === Infinity) return Infinity;
  const t = d instanceof Date ? d.getTime() : Number(d);
  return Number.isFinite(t) ? t - Date.now() : Infinity;
}

/**
 * Deadline for a downstream call made while serving `call`: the caller's deadline, tightened to
 * `capMs` from now when given. Propagating it keeps a cancelled job from leaving work behind.
 */
export function downstreamDeadline(call: AnyCall | undefined, capMs?: number): Date | undefined {
  const left = call ? msUntilDeadline(call) : Infinity;
  const ms = Math.min(left, capMs ?? Infinity);
  return Number.isFinite(ms) ? new Date(Date.now() + Math.max(0, ms)) : undefined;
}

/** An AbortSignal that fires when the client cancels or the deadline passes. */
export function callSignal(call: AnyCall): AbortSignal {
  const ac = new AbortController();
  const onCancel = () => ac.abort(Object.assign(new Error("call cancelled by client"), { name: "AbortError" }));
  (call as unknown as NodeJS.EventEmitter).on("cancelled", onCancel);
  const left = msUntilDeadline(call);
  if (Number.isFinite(left)) {
    const timer = setTimeout(() => ac.abort(Object.assign(new Error("deadline exceeded"), { name: "AbortError" })), Math.max(0, left));
    timer.unref();
    ac.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  }
  return ac.signal;
}
