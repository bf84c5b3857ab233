/** Messages between the RolloutEngine (main thread) and its decode workers. */
import type { ModelManifest } from "@rlmesh/shared/model/index";
import type { DecodeParams } from "../decoding/decode-params.js";
import type { DecodeInput, DecodedSequence } from "../decoding/diffusion-decoder.js";
import type { InfillInput, InfilledSequence } from "../decoding/infill-decoder.js";
import type { InfillParams } from "../decoding/infill-params.js";
import type { ExecutionProvider, SessionSettings } from "./execution-provider.js";

export interface WorkerInit {
  index: number;
  modelBytes: Uint8Array;
  /**
   * For a model with ONNX external data: its model.onnx path (sessions are created from the path,
   * weight versions from copies of it; see external-weights.ts). Absent = a self-contained model.
   */
  externalModelPath?: string;
  /** Ids the model's tokenizer can produce; the decoder proposes no id at or above it. */
  tokenizerVocabSize?: number;
  manifest: ModelManifest;
  settings: SessionSettings;
  version: number;
}

export type ToWorker =
  | { type: "generate"; id: number; inputs: DecodeInput[]; params: DecodeParams; postedAt: number }
  | { type: "infill"; id: number; inputs: InfillInput[]; params: InfillParams; postedAt: number }
  | { type: "cancel"; id: number; reason: string }
  | { type: "prepare"; version: number; weights: Array<[string, Float32Array]> }
  | { type: "commit"; version: number }
  | { type: "discard"; version: number };

export interface SerializedError {
  name: string;
  message: string;
  field?: string;
}

export interface ForwardCounts {
  full: number;
  cached: number;
}

export type FromWorker =
  | { type: "ready"; provider: ExecutionProvider; fallbackReason?: string }
  | { type: "init-failed"; error: SerializedError }
  | {
      type: "result";
      id: number;
      version: number;
      results: DecodedSequence[];
      queueSeconds: number;
      decodeSeconds: number;
      forwards: ForwardCounts;
    }
  | {
      type: "infill-result";
      id: number;
      version: number;
      results: InfilledSequence[];
      queueSeconds: number;
      decodeSeconds: number;
      forwards: ForwardCounts;
    }
  | { type: "error"; id: number; error: SerializedError }
  | { type: "prepared"; version: number; seconds: number }
  | { type: "prepare-failed"; version: number; error: SerializedError }
  | { type: "committed"; version: number };
