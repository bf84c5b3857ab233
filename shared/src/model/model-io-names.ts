/** Tensor names of the model I/O contract (shared/src/model/README.md). A user's export must use the same. */
export const INPUT_IDS = "input_ids";
export const POSITION_IDS = "position_ids";
export const ATTENTION_MASK = "attention_mask";
export const LOGITS = "logits";

export function pastKeyName(layer: number): string {
  return `past_key_${layer}`;
}
export function pastValueName(layer: number): string {
  return `past_value_${layer}`;
}
export function presentKeyName(layer: number): string {
  return `present_key_${layer}`;
}
export function presentValueName(layer: number): string {
  return `present_value_${layer}`;
}

/** Graph input names in order: ids, positions, mask, then past K/V per layer (if the graph has them). */
export function modelInputNames(nLayers: number, withPast: boolean): string[] {
  const names = [INPUT_IDS, POSITION_IDS, ATTENTION_MASK];
  if (withPast) for (let i = 0; i < nLayers; i++) names.push(pastKeyName(i), pastValueName(i));
  return names;
}

/** Graph output names in order: logits, then present K/V per layer. */
export function modelOutputNames(nLayers: number): string[] {
  const names = [LOGITS];
  for (let i = 0; i < nLayers; i++) names.push(presentKeyName(i), presentValueName(i));
  return names;
}
