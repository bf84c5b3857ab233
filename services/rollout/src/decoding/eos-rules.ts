/**
 * End-of-response rules: the first EOS (or PAD) ends the response; every position after it
 * is PAD, and the returned token ids and text stop there (EOS kept in the ids).
 */

export interface SpecialIds {
  maskId: number;
  padId: number;
  eosId: number;
}

/** Index (absolute) of the first committed EOS/PAD in ids[start, end), or -1. */
export function firstEnd(ids: Int32Array, start: number, end: number, special: SpecialIds): number {
  for (let i = start; i < end; i++) {
    const t = ids[i] as number;
    if (t === special.eosId || t === special.padId) return i;
  }
  return -1;
}

/**
 * Writes PAD over every position after the first EOS/PAD in ids[start, end).
 * Returns the highest position it changed, or -1 when nothing changed.
 */
export function fillAfterEnd(ids: Int32Array, start: number, end: number, special: SpecialIds): number {
  const e = firstEnd(ids, start, end, special);
  if (e < 0) return -1;
  let changed = -1;
  for (let i = e + 1; i < end; i++) {
    if (ids[i] !== special.padId) {
      changed = i;
      ids[i] = special.padId;
    }
  }
  return changed;
}

export interface ResponseCut {
  /** Response ids up to and including the first EOS; a PAD end is not included. */
  tokenIds: number[];
  /** The response ended with EOS/PAD inside the budget. */
  finished: boolean;
}

/** The user-visible response in ids[start, end). */
export function cutResponse(ids: Int32Array, start: number, end: number, special: SpecialIds): ResponseCut {
  const e = firstEnd(ids, start, end, special);
  if (e < 0) return { tokenIds: Array.from(ids.subarray(start, end)), finished: false };
  const stop = ids[e] === special.eosId ? e + 1 : e;
  return { tokenIds: Array.from(ids.subarray(start, stop)), finished: true };
}
