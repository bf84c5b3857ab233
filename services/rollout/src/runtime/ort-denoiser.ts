/** The Denoiser seam over an onnxruntime-node session of a model-contract ONNX graph. */
import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-node";
import { layerName, type ModelManifest } from "@rlmesh/shared/model/index";
import type { Denoiser, DenoiserSpec, ForwardInput, ForwardOutput } from "../decoding/denoiser.js";

type OrtModule = typeof import("onnxruntime-node");

export function specFromManifest(m: ModelManifest, tokenizerVocabSize?: number): DenoiserSpec {
  return {
    ...(tokenizerVocabSize !== undefined ? { tokenizerVocabSize } : {}),
    vocabSize: m.vocab_size,
    nLayers: m.n_layers,
    nHeads: m.n_heads,
    nKvHeads: m.n_kv_heads ?? m.n_heads,
    headDim: m.head_dim,
    maxSeqLen: m.max_seq_len,
    maskId: m.mask_id,
    padId: m.pad_id,
    eosId: m.eos_id,
    shiftedLogits: m.shifted_logits,
  };
}

export class OrtDenoiser implements Denoiser {
  readonly spec: DenoiserSpec;
  private readonly pastK: string[] = [];
  private readonly pastV: string[] = [];
  private readonly presentK: string[] = [];
  private readonly presentV: string[] = [];
  /** The graph has past K/V inputs (a cache-capable export). */
  readonly hasPast: boolean;

  constructor(
    private readonly ort: OrtModule,
    readonly session: InferenceSession,
    private readonly manifest: ModelManifest,
    tokenizerVocabSize?: number,
  ) {
    this.spec = specFromManifest(manifest, tokenizerVocabSize);
    const { inputs, outputs } = manifest;
    this.hasPast = inputs.past_key !== undefined && session.inputNames.includes(layerName(inputs.past_key, 0));
    for (let i = 0; i < manifest.n_layers; i++) {
      if (this.hasPast) {
        this.pastK.push(layerName(inputs.past_key!, i));
        this.pastV.push(layerName(inputs.past_value!, i));
      }
      if (outputs.present_key && outputs.present_value) {
        this.presentK.push(layerName(outputs.present_key, i));
        this.presentV.push(layerName(outputs.present_value, i));
      }
    }
  }

  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { ort, manifest, spec } = this;
    const { batch: B, length: T, pastLength: P } = input;
    const feeds: Record<string, OrtTensor> = {
      [manifest.inputs.input_ids]: new ort.Tensor(
        "int64",
        BigInt64Array.from(input.ids, (v) => BigInt(v)),
        [B, T],
      ),
      [manifest.inputs.position_ids]: new ort.Tensor(
        "int64",
        BigInt64Array.from(input.positions, (v) => BigInt(v)),
        [B, T],
      ),
      [manifest.inputs.attention_mask]: new ort.Tensor("float32", input.attention, [B, P + T]),
    };
    if (P > 0 && !this.hasPast) throw new Error("this model has no past K/V inputs; use cache none");
    if (this.hasPast) {
      const empty = new Float32Array(0);
      const kvH = spec.nKvHeads ?? spec.nHeads;
      for (let i = 0; i < spec.nLayers; i++) {
        feeds[this.pastK[i]!] = new ort.Tensor("float32", P > 0 ? input.past!.keys[i]! : empty, [B, kvH, P, spec.headDim]);
        feeds[this.pastV[i]!] = new ort.Tensor("float32", P > 0 ? input.past!.values[i]! : empty, [B, kvH, P, spec.headDim]);
      }
    }
    if (input.wantPresent && this.presentK.length === 0) throw new Error("this model has no present K/V outputs; use cache none");
    const fetches = input.wantPresent ? [manifest.outputs.logits, ...this.presentK, ...this.presentV] : [manifest.outputs.logits];
    const out = await this.session.run(feeds, fetches);
    const logits = out[manifest.outputs.logits]!.data as Float32Array;
    if (!input.wantPresent) return { logits };
    return {
      logits,
      present: {
        keys: this.presentK.map((n) => out[n]!.data as Float32Array),
        values: this.presentV.map((n) => out[n]!.data as Float32Array),
      },
    };
  }
}
