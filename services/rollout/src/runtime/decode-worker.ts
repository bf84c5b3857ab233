/**
 * Worker-thread entry: owns one onnxruntime session (its run() blocks the thread it runs on)
 * and decodes one batch at a time. A weight version is prepared (new session from patched
 * initializers) and committed separately, so every worker switches only after all are ready;
 * a batch in flight keeps the session it started with and reports that version.
 */
import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";
import { createLogger } from "@rlmesh/shared";
import { modelBytes as serialize, parseModel, replaceWeights } from "@rlmesh/shared/model/index";
import { decodeBatch, DecodeAbortedError } from "../decoding/diffusion-decoder.js";
import { decodeInfillBatch } from "../decoding/infill-decoder.js";
import { InvalidDecodeParamsError } from "../decoding/decode-params.js";
import { createSessionWithFallback } from "./execution-provider.js";
import { writeExternalVersion } from "./external-weights.js";
import { OrtDenoiser } from "./ort-denoiser.js";
import type { FromWorker, SerializedError, ToWorker, WorkerInit } from "./worker-protocol.js";

interface Served {
  denoiser: OrtDenoiser;
  version: number;
  inFlight: number;
  retired: boolean;
}

const init = workerData as WorkerInit;
const port = parentPort!;
const log = createLogger("rollout").child({ worker: init.index });
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

function serializeError(err: unknown): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  return { name: e.name, message: e.message, ...(err instanceof InvalidDecodeParamsError ? { field: err.field } : {}) };
}

function release(s: Served): void {
  if (s.retired && s.inFlight === 0) void s.denoiser.session.release();
}

async function main(): Promise<void> {
  const baseModel = parseModel(init.modelBytes);
  const first = await createSessionWithFallback(ort, init.externalModelPath ?? init.modelBytes, init.settings, log);
  let current: Served = {
    denoiser: new OrtDenoiser(ort, first.session, init.manifest, init.tokenizerVocabSize),
    version: init.version,
    inFlight: 0,
    retired: false,
  };
  const pending = new Map<number, Served>();
  const queue: Array<Extract<ToWorker, { type: "generate" | "infill" }>> = [];
  const controllers = new Map<number, AbortController>();
  let busy = false;

  const pump = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    while (queue.length > 0) {
      const job = queue.shift()!;
      const ctl = controllers.get(job.id)!;
      const served = current;
      served.inFlight++;
      const started = Date.now();
      const forwards = { full: 0, cached: 0 };
      try {
        if (ctl.signal.aborted) throw new DecodeAbortedError(ctl.signal.reason);
        if (job.type === "infill") {
          // Infill (issue 18): full forwards over each canvas, whose length changes as it decodes.
          const filled = await decodeInfillBatch(served.denoiser, job.inputs, job.params, {
            signal: ctl.signal,
            onForward: (f) => forwards[f.kind]++,
          });
          post({
            type: "infill-result",
            id: job.id,
            version: served.version,
            results: filled,
            queueSeconds: Math.max(0, started - job.postedAt) / 1000,
            decodeSeconds: (Date.now() - started) / 1000,
            forwards,
          });
          continue;
        }
        const results = await decodeBatch(served.denoiser, job.inputs, job.params, {
          signal: ctl.signal,
          onForward: (f) => forwards[f.kind]++,
        });
        post(
          {
            type: "result",
            id: job.id,
            version: served.version,
            results,
            queueSeconds: Math.max(0, started - job.postedAt) / 1000,
            decodeSeconds: (Date.now() - started) / 1000,
            forwards,
          },
          results.flatMap((r) => [r.rawResponse.buffer as ArrayBuffer, ...(r.commitSteps ? [r.commitSteps.buffer as ArrayBuffer] : [])]),
        );
      } catch (err) {
        post({ type: "error", id: job.id, error: serializeError(err) });
      } finally {
        controllers.delete(job.id);
        served.inFlight--;
        release(served);
      }
    }
    busy = false;
  };

  port.on("message", (msg: ToWorker) => {
    switch (msg.type) {
      case "generate":
      case "infill":
        controllers.set(msg.id, new AbortController());
        queue.push(msg);
        void pump();
        break;
      case "cancel":
        controllers.get(msg.id)?.abort(new Error(msg.reason));
        break;
      case "prepare": {
        const t0 = Date.now();
        void (async () => {
          try {
            let created: Awaited<ReturnType<typeof createSessionWithFallback>>;
            if (init.externalModelPath) {
              const copy = await writeExternalVersion(init.externalModelPath, baseModel, new Map(msg.weights), `w${init.index}-v${msg.version}`);
              try {
                created = await createSessionWithFallback(ort, copy.modelPath, init.settings);
              } finally {
                await copy.dispose();
              }
            } else {
              created = await createSessionWithFallback(ort, serialize(replaceWeights(baseModel, new Map(msg.weights))), init.settings);
            }
            pending.set(msg.version, {
              denoiser: new OrtDenoiser(ort, created.session, init.manifest, init.tokenizerVocabSize),
              version: msg.version,
              inFlight: 0,
              retired: false,
            });
            post({ type: "prepared", version: msg.version, seconds: (Date.now() - t0) / 1000 });
          } catch (err) {
            post({ type: "prepare-failed", version: msg.version, error: serializeError(err) });
          }
        })();
        break;
      }
      case "commit": {
        const next = pending.get(msg.version);
        if (next) {
          pending.delete(msg.version);
          const old = current;
          current = next;
          old.retired = true;
          release(old);
          log.info("weights swapped", { version: msg.version });
        }
        post({ type: "committed", version: msg.version });
        break;
      }
      case "discard": {
        const p = pending.get(msg.version);
        pending.delete(msg.version);
        if (p) void p.denoiser.session.release();
        break;
      }
    }
  });
  post({ type: "ready", provider: first.provider, ...(first.fallbackReason ? { fallbackReason: first.fallbackReason } : {}) });
}

main().catch((err) => post({ type: "init-failed", error: serializeError(err) }));
