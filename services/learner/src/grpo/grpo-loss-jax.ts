// The shims must be installed before @jax-js/jax is first evaluated (see model/jax-runtime.ts).
import "../model/jax-runtime.js";
import { lax, numpy as np, type Array as JaxArray } from "@jax-js/jax";
import { LOG_RATIO_CLAMP } from "./clipped-surrogate.js";
import { GrpoConfigError, type GrpoLossConfig } from "./grpo-config.js";

/**
 * A loss of the policy's per-token log-probs [N, T] and extra [N, T] inputs (the signature
 * JaxPolicy.lossAndGrad takes). Consumes both arguments (jax-js move semantics).
 */
export type LogProbLoss = (logProbs: JaxArray, extras: Record<string, JaxArray>) => JaxArray;

const cache = new Map<string, LogProbLoss>();

/**
 * The GRPO clipped objective on stacked passes (see stacked-passes.ts), in jax-js:
 *   lr = clamp(coef·logp − oldTerm), r = e^lr
 *   L  = factor·( max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high)) [min −c·A for A<0] + β·k3(refTerm − coef·logp) )
 * summed. One function object per distinct config, so a caller that jits per loss function
 * (JaxPolicy caches by identity) compiles once.
 *
 * With `oldFromSelf`, the old log-probs are the forward's own values (stop-gradient) and the
 * extras carry no `oldTerm`: one forward+backward instead of a forward for the old log-probs and
 * another forward+backward (grpo-update.ts `fuseOldLogProbs`).
 */
export function grpoLogProbLoss(cfg: GrpoLossConfig, opts: { oldFromSelf?: boolean } = {}): LogProbLoss {
  if (cfg.entropyCoef > 0) throw new GrpoConfigError("entropyCoef > 0 is not supported by the log-prob loss");
  const oldFromSelf = opts.oldFromSelf ?? false;
  const key = JSON.stringify([cfg.clipEpsLow, cfg.clipEpsHigh, cfg.dualClipC, cfg.klCoef, oldFromSelf]);
  const hit = cache.get(key);
  if (hit) return hit;
  const lo = 1 - cfg.clipEpsLow;
  const hi = 1 + cfg.clipEpsHigh;
  const loss: LogProbLoss = (logProbs, ex) => {
    const used = new Set<string>();
    const need = (k: string): JaxArray => {
      const a = ex[k];
      if (!a) throw new GrpoConfigError(`GRPO loss: extra input "${k}" missing`);
      used.add(k);
      return a;
    };
    const coef = need("coef");
    // Positions a row does not score are zeroed with `where`, so a −∞ there cannot become NaN.
    const ell = np.where(coef.ref.notEqual(0), logProbs, 0).mul(coef);
    // oldFromSelf: the old policy is this very forward (on-policy, before any optimizer step), so
    // oldTerm = stop_gradient(ell): ratio 1, and the gradient of the clipped objective at ratio 1.
    const oldTerm = oldFromSelf ? lax.stopGradient(ell.ref) : need("oldTerm");
    const logRatio = np.clip(ell.ref.sub(oldTerm), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    const ratio = np.exp(logRatio);
    const adv = need("adv");
    const unclipped = ratio.ref.mul(adv.ref).neg();
    const clipped = np.clip(ratio, lo, hi).mul(adv).neg();
    let tokenLoss = np.maximum(unclipped, clipped);
    if (cfg.dualClipC !== null) tokenLoss = np.minimum(tokenLoss, need("dualBound"));
    if (cfg.klCoef > 0) {
      const x = np.clip(need("refTerm").sub(ell.ref), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
      tokenLoss = tokenLoss.add(np.exp(x.ref).sub(x).sub(1).mul(cfg.klCoef));
    }
    ell.dispose();
    const total = tokenLoss.mul(need("factor")).sum();
    for (const [k, v] of Object.entries(ex)) if (!used.has(k)) v.dispose();
    return total;
  };
  cache.set(key, loss);
  return loss;
}
