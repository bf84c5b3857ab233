import type { PolicyModelConfig } from "./model-config.js";
import { SeededRandom } from "./seeded-random.js";
import { INIT_STD, shapeSize, weightLayout } from "./weight-layout.js";

export type WeightMap = Map<string, Float32Array>;

/** Fresh weights for a config, reproducible from the seed. */
export function initWeights(config: PolicyModelConfig, seed: number): WeightMap {
  const rng = new SeededRandom(seed);
  const out: WeightMap = new Map();
  for (const spec of weightLayout(config)) {
    const data = new Float32Array(shapeSize(spec.shape));
    if (spec.init === "ones") data.fill(1);
    else if (spec.init === "zeros") data.fill(0);
    else for (let i = 0; i < data.length; i++) data[i] = rng.normal() * INIT_STD;
    out.set(spec.name, data);
  }
  return out;
}
