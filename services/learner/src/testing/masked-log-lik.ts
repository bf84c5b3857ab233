import type { JaxPolicy } from "../model/jax-policy.js";
import type { NamedTensors } from "../optim/named-tensors.js";

/** One row for maskedLogLik: its tokens, and which of them are masked and scored. */
export interface ScoredRow {
  ids: readonly number[];
  scored: (position: number) => boolean;
}

/**
 * Σ log p(token) over each row's scored positions with all of them masked at once (the other
 * positions clean, the rest of the T-long row PAD and unattended), per row. For tests that check
 * an update moved a likelihood the advantage's way.
 */
export async function maskedLogLik(
  scorer: JaxPolicy,
  weights: NamedTensors,
  rows: readonly ScoredRow[],
  ids: { mask: number; pad: number },
  T = 16,
): Promise<number[]> {
  const B = rows.length;
  const inputIds = new Int32Array(B * T).fill(ids.pad);
  const targets = new Int32Array(B * T).fill(ids.pad);
  const attention = new Float32Array(B * T);
  const scored = new Uint8Array(B * T);
  rows.forEach((row, b) =>
    row.ids.forEach((id, j) => {
      const s = row.scored(j);
      inputIds[b * T + j] = s ? ids.mask : id;
      targets[b * T + j] = id;
      attention[b * T + j] = 1;
      scored[b * T + j] = s ? 1 : 0;
    }),
  );
  const lp = await scorer.tokenLogProbs(weights, {
    batchSize: B,
    seqLen: T,
    inputIds,
    positionIds: Int32Array.from({ length: B * T }, (_, i) => i % T),
    attentionMask: attention,
    targets,
  });
  return rows.map((_, b) => {
    let s = 0;
    for (let j = b * T; j < (b + 1) * T; j++) if (scored[j]) s += lp[j]!;
    return s;
  });
}
