import { assertSameLayout, zerosLikeNamed, type NamedTensors } from "./named-tensors.js";

export const DEFAULT_ADAM_BETA1 = 0.9;
export const DEFAULT_ADAM_BETA2 = 0.999;
export const DEFAULT_ADAM_EPS = 1e-8;
export const DEFAULT_WEIGHT_DECAY = 0.01;

export interface AdamWConfig {
  /** @defaultValue DEFAULT_ADAM_BETA1 */
  beta1: number;
  /** @defaultValue DEFAULT_ADAM_BETA2 */
  beta2: number;
  /** @defaultValue DEFAULT_ADAM_EPS */
  eps: number;
  /** Decoupled weight decay (Loshchilov & Hutter), applied as p -= lr·wd·p. @defaultValue DEFAULT_WEIGHT_DECAY */
  weightDecay: number;
  /** Names that get no weight decay (biases, norms, embeddings by choice). @defaultValue none */
  noDecay?: (name: string) => boolean;
}

export const DEFAULT_ADAMW_CONFIG: Readonly<AdamWConfig> = Object.freeze({
  beta1: DEFAULT_ADAM_BETA1,
  beta2: DEFAULT_ADAM_BETA2,
  eps: DEFAULT_ADAM_EPS,
  weightDecay: DEFAULT_WEIGHT_DECAY,
});

/** Everything needed to resume AdamW exactly; `step` counts updates already applied. */
export interface AdamWState {
  step: number;
  m: NamedTensors;
  v: NamedTensors;
}

export function initAdamW(params: NamedTensors): AdamWState {
  return { step: 0, m: zerosLikeNamed(params), v: zerosLikeNamed(params) };
}

/**
 * One AdamW update in place on `params` and `state` (same as torch.optim.AdamW):
 * m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; p ← p − lr·wd·p − lr·m̂/(√v̂ + ε).
 */
export function adamwStep(
  params: NamedTensors,
  grads: NamedTensors,
  state: AdamWState,
  lr: number,
  cfg: AdamWConfig = DEFAULT_ADAMW_CONFIG,
): void {
  assertSameLayout(params, grads, "adamw params/grads");
  assertSameLayout(params, state.m, "adamw params/state");
  state.step += 1;
  const bc1 = 1 - cfg.beta1 ** state.step;
  const bc2 = 1 - cfg.beta2 ** state.step;
  for (const [name, p] of Object.entries(params)) {
    const g = grads[name]!.data;
    const m = state.m[name]!.data;
    const v = state.v[name]!.data;
    const decay = cfg.noDecay?.(name) ? 0 : lr * cfg.weightDecay;
    const pd = p.data;
    for (let i = 0; i < pd.length; i++) {
      const gi = g[i]!;
      const mi = cfg.beta1 * m[i]! + (1 - cfg.beta1) * gi;
      const vi = cfg.beta2 * v[i]! + (1 - cfg.beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      pd[i] = pd[i]! - decay * pd[i]! - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + cfg.eps);
    }
  }
}
