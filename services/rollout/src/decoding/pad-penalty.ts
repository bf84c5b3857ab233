/**
 * Dream-Coder's PAD penalty: early in the decode the model is too eager to end the response,
 * so PAD/EOS logits are lowered by `padPenalty`, relaxed linearly to 0 as the response fills.
 */

/** Penalty after `progress` (fraction of response positions already committed, 0..1). */
export function padPenaltyAt(padPenalty: number, progress: number): number {
  const p = Math.min(1, Math.max(0, progress));
  return padPenalty * (1 - p);
}

/** Subtracts `amount` from the PAD and EOS logits of the row at `offset` (in place). */
export function applyPadPenalty(row: Float32Array | Float64Array, offset: number, padId: number, eosId: number, amount: number): void {
  if (amount === 0) return;
  row[offset + padId] = (row[offset + padId] as number) - amount;
  if (eosId !== padId) row[offset + eosId] = (row[offset + eosId] as number) - amount;
}
