import { test } from "node:test";
import assert from "node:assert/strict";
import { aggregateTokenLoss, aggregationFactors } from "./loss-aggregation.js";
import type { LossAggregation } from "./grpo-config.js";

const L = [1, 2, 3, 4, 5, 6];
const valid = [1, 1, 0, 1, 0, 0];
const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-6, `${a} != ${b}`);

test("token-mean, seq-mean-token-sum and seq-mean-token-mean by hand", () => {
  close(aggregateTokenLoss(L, valid, 2, 3, "token-mean"), 7 / 3);
  close(aggregateTokenLoss(L, valid, 2, 3, "seq-mean-token-sum"), (3 + 4) / 2);
  close(aggregateTokenLoss(L, valid, 2, 3, "seq-mean-token-mean"), (1.5 + 4) / 2);
});

test("aggregation factors reproduce each reduction as a weighted sum; empty rows are left out", () => {
  const modes: LossAggregation[] = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"];
  const L3 = [...L, 7, 8, 9];
  const v3 = [...valid, 0, 0, 0];
  for (const mode of modes) {
    const f = aggregationFactors(v3, 3, 3, mode);
    const viaFactors = L3.reduce((s, x, i) => s + x * f[i]!, 0);
    close(viaFactors, aggregateTokenLoss(L3, v3, 3, 3, mode));
  }
  close(aggregateTokenLoss(L3, v3, 3, 3, "seq-mean-token-sum"), 3.5);
  assert.equal(aggregateTokenLoss([1, 2], [0, 0], 1, 2, "token-mean"), 0);
});
