// A tiny Dream-type model directory for end-to-end tests: the test fixture writes a random
// checkpoint in the exact Hugging Face layout, `import-hf` turns it into an rlmesh model
// (shifted logits, GQA, q/k/v bias, SwiGLU, Gather embedding), then a few hundred masked-diffusion
// SFT steps through the learner's own shifted-logits path teach it two answers to one prompt
// (`print(1)` and `print(2)`, half each), so sampled groups get mixed rewards and GRPO updates.
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { importHfCheckpoint, modelBytes, parseModel, replaceWeights, type LoadedModel } from "@rlmesh/shared/model/index";
import { writeHfFixture } from "@rlmesh/shared/model/hf/testing/hf-fixture";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { JaxPolicy, type TokenBatch } from "@rlmesh/learner/model/jax-policy";
import { initJax } from "@rlmesh/learner/model/jax-runtime";
import { adamwStep, initAdamW } from "@rlmesh/learner/optim/adamw";
import { SeededRandom } from "@rlmesh/shared/model/seeded-random";

export const TAUGHT_PROMPT = "Write a program that prints the number one.";
export const TAUGHT_ANSWERS = ["```python\nprint(1)\n```", "```python\nprint(2)\n```"];
/** A task whose tests pass for the first answer only. */
export const TAUGHT_TASK = { task_id: "print-one", prompt: TAUGHT_PROMPT, tests: { kind: "stdio", cases: [{ input: "", output: "1\n" }] } };

export interface TaughtDream {
  dir: string;
  imported: LoadedModel;
  /** Masked-token loss of the first and last SFT steps. */
  losses: [number, number];
  responseBudget: number;
}

/** Imports a tiny random Dream checkpoint into `root/imported`, then writes the taught copy to `root/model`. */
export async function taughtDreamModel(root: string, opts: { steps?: number; responseBudget?: number; seed?: number } = {}): Promise<TaughtDream> {
  const steps = opts.steps ?? 200;
  const R = opts.responseBudget ?? 16;
  const fixture = await writeHfFixture({ modelType: "Dream", dir: join(root, "hf"), seed: opts.seed ?? 3 });
  const { model: imported } = await importHfCheckpoint(fixture.dir, { out: join(root, "imported"), name: "dream-tiny" });
  const m = imported.manifest;
  const tok = await loadTokenizer(imported.tokenizerPath);
  const prompt = tok.encode(TAUGHT_PROMPT);
  const answers = TAUGHT_ANSWERS.map((a) => {
    const ids = [...tok.encode(a), m.eos_id];
    if (ids.length > R) throw new Error(`taught answer is ${ids.length} tokens, budget ${R}`);
    return [...ids, ...new Array<number>(R - ids.length).fill(m.pad_id)];
  });
  await initJax();
  const policy = JaxPolicy.fromLoadedModel(imported, "whole-graph");
  const weights = policy.initialWeights();
  const adam = initAdamW(weights);
  const rng = new SeededRandom(opts.seed ?? 3);
  const B = 8;
  const P = prompt.length;
  const T = P + R;
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const inputIds = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const tw = new Float32Array(B * T);
    for (let b = 0; b < B; b++) {
      const clean = [...prompt, ...answers[b % 2]!];
      targets.set(clean, b * T);
      inputIds.set(clean, b * T);
      // Masked diffusion: each response position masked with probability t ~ U(0.1, 1), at least one.
      const t = 0.1 + 0.9 * rng.next();
      let masked = 0;
      for (let j = P; j < T; j++) {
        if (rng.next() < t || (j === T - 1 && masked === 0)) {
          inputIds[b * T + j] = m.mask_id;
          tw[b * T + j] = 1;
          masked++;
        }
      }
      for (let j = P; j < T; j++) tw[b * T + j] = tw[b * T + j]! / (masked * B);
    }
    const batch: TokenBatch = {
      batchSize: B,
      seqLen: T,
      inputIds,
      positionIds: Int32Array.from({ length: B * T }, (_, i) => i % T),
      attentionMask: new Float32Array(B * T).fill(1),
      targets,
    };
    const { loss, grads } = await policy.weightedNllGrad(weights, batch, tw);
    losses.push(loss);
    adamwStep(weights, grads, adam, 1e-2);
  }
  policy.dispose();
  const dir = join(root, "model");
  await mkdir(dir, { recursive: true });
  for (const f of ["manifest.json", m.files.tokenizer]) await copyFile(join(imported.dir, f), join(dir, f));
  const proto = replaceWeights(parseModel(imported.modelBytes), new Map(Object.entries(weights).map(([k, v]) => [k, v.data])));
  await writeFile(join(dir, m.files.model), modelBytes(proto));
  return { dir, imported, losses: [losses[0]!, losses.at(-1)!], responseBudget: R };
}
