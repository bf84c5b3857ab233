import type { NamedTensors } from "./named-tensors.js";

/** Global L2 norm over every gradient tensor (accumulated in float64). */
export function globalGradNorm(grads: NamedTensors): number {
  let ss = 0;
  for (const g of Object.values(grads)) for (let i = 0; i < g.data.length; i++) ss += g.data[i]! * g.data[i]!;
  return Math.sqrt(ss);
}

/**
 * Scales gradients in place so their global norm is at most `maxNorm` (torch's
 * clip_grad_norm_: factor maxNorm / (norm + 1e-6), only when it is < 1). Returns the norm before
 * clipping; a non-finite norm leaves the gradients untouched and must make the caller skip the
 * update.
 */
export function clipGradNorm(grads: NamedTensors, maxNorm: number): { norm: number; scale: number; finite: boolean } {
  const norm = globalGradNorm(grads);
  if (!Number.isFinite(norm)) return { norm, scale: 1, finite: false };
  const scale = maxNorm / (norm + 1e-6);
  if (scale < 1) for (const g of Object.values(grads)) for (let i = 0; i < g.data.length; i++) g.data[i] = g.data[i]! * scale;
  return { norm, scale: Math.min(1, scale), finite: true };
}
