/**
 * ORT session creation with the configured execution provider. onnxruntime throws when a
 * provider cannot load (it does not fall back), so we try it, log why it failed, and fall
 * back to CPU; the provider really in use is returned and logged.
 */
import type { InferenceSession } from "onnxruntime-node";
import type { Logger } from "@rlmesh/shared";

export type ExecutionProvider = "cpu" | "cuda" | "webgpu";
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ["cpu", "cuda", "webgpu"];

export interface SessionSettings {
  /** @defaultValue "cpu" */
  executionProvider: ExecutionProvider;
  /** ORT intra-op threads of this session (replicas × threads should not exceed the cores). */
  intraOpNumThreads: number;
}

export interface CreatedSession {
  session: InferenceSession;
  provider: ExecutionProvider;
  /** Why the configured provider was not used (when it fell back). */
  fallbackReason?: string;
}

type OrtModule = typeof import("onnxruntime-node");

function options(provider: ExecutionProvider, threads: number): InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
  };
}

export async function createSessionWithFallback(
  ort: OrtModule,
  modelBytes: Uint8Array | string,
  settings: SessionSettings,
  log?: Logger,
): Promise<CreatedSession> {
  // A path (a model with ONNX external data: onnxruntime reads the data files next to it) or bytes.
  const create = (o: ReturnType<typeof options>) =>
    typeof modelBytes === "string" ? ort.InferenceSession.create(modelBytes, o) : ort.InferenceSession.create(modelBytes, o);
  const wanted = settings.executionProvider;
  if (wanted !== "cpu") {
    try {
      const session = await create(options(wanted, settings.intraOpNumThreads));
      log?.info("onnxruntime session created", { execution_provider: wanted, intra_op_threads: settings.intraOpNumThreads });
      return { session, provider: wanted };
    } catch (err) {
      const reason = (err as Error).message;
      log?.warn("execution provider unavailable, falling back to cpu", { wanted, reason });
      const session = await create(options("cpu", settings.intraOpNumThreads));
      log?.info("onnxruntime session created", { execution_provider: "cpu", intra_op_threads: settings.intraOpNumThreads });
      return { session, provider: "cpu", fallbackReason: reason };
    }
  }
  const session = await create(options("cpu", settings.intraOpNumThreads));
  log?.info("onnxruntime session created", { execution_provider: "cpu", intra_op_threads: settings.intraOpNumThreads });
  return { session, provider: "cpu" };
}
