import { headDim, kvHeads } from "./model-config.js";
import type { PolicyModelConfig } from "./model-config.js";

/** One trainable tensor of the policy: its stable name (= ONNX initializer name) and shape. */
export interface WeightSpec {
  name: string;
  shape: number[];
  /** How a fresh model initialises it. */
  init: "normal" | "ones" | "zeros";
}

/** Std of the normal init of matrices (GPT-2 style). */
export const INIT_STD = 0.02;

/**
 * All trainable tensors in a fixed order. The names are part of the model contract: rollout patches
 * initializers by name, the learner passes them as jax-js inputs by name, checkpoints store them by name.
 */
export function weightLayout(config: PolicyModelConfig): WeightSpec[] {
  const { vocabSize: v, dModel: d, ffDim: f } = config;
  const qDim = config.nHeads * headDim(config);
  const kvDim = kvHeads(config) * headDim(config);
  const specs: WeightSpec[] = [{ name: "tok_embedding", shape: [v, d], init: "normal" }];
  for (let i = 0; i < config.nLayers; i++) {
    const p = `layers.${i}`;
    specs.push(
      { name: `${p}.attn_norm`, shape: [d], init: "ones" },
      { name: `${p}.attn.wq`, shape: [d, qDim], init: "normal" },
      { name: `${p}.attn.wk`, shape: [d, kvDim], init: "normal" },
      { name: `${p}.attn.wv`, shape: [d, kvDim], init: "normal" },
    );
    if (config.qkvBias) {
      specs.push(
        { name: `${p}.attn.bq`, shape: [qDim], init: "zeros" },
        { name: `${p}.attn.bk`, shape: [kvDim], init: "zeros" },
        { name: `${p}.attn.bv`, shape: [kvDim], init: "zeros" },
      );
    }
    specs.push({ name: `${p}.attn.wo`, shape: [qDim, d], init: "normal" }, { name: `${p}.ffn_norm`, shape: [d], init: "ones" });
    if (config.mlp === "swiglu") specs.push({ name: `${p}.ffn.w_gate`, shape: [d, f], init: "normal" });
    specs.push({ name: `${p}.ffn.w_up`, shape: [d, f], init: "normal" }, { name: `${p}.ffn.w_down`, shape: [f, d], init: "normal" });
  }
  specs.push({ name: "final_norm", shape: [d], init: "ones" });
  if (!config.tiedEmbeddings) specs.push({ name: "lm_head", shape: [d, v], init: "normal" });
  return specs;
}

export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function parameterCount(config: PolicyModelConfig): number {
  return weightLayout(config).reduce((n, s) => n + shapeSize(s.shape), 0);
}
