/**
 * Decode traces of a job (spec.trace_samples_per_step > 0): the step's Generate asks every
 * sample for its commit steps (DecodingParams.trace: a whole request shares its parameters, and
 * the bookkeeping is one small array per sample), and after scoring a few of them — evenly spread
 * over the step's scored samples, so several prompts show — are kept with their rewards, token
 * texts (the model's tokenizer) and order correlation, with the job in Redis (JobStore.appendTraces).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger, Sample } from "@rlmesh/shared";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import type { TracedSample__Output as TracedSample } from "@rlmesh/shared/gen/rlmesh/v1/TracedSample";
import { loadManifest } from "@rlmesh/shared/model/index";
import { orderCorrelation } from "@rlmesh/shared/trace/index";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";
import { cachedTokenizer } from "./job-datasets.js";
import type { RunnerDeps } from "./runner-deps.js";

/** Token ids to one text per token. */
export type TokenTexts = (ids: readonly number[]) => string[];

/** `n` of `items` evenly spaced (all of them when there are no more than n). */
export function pickEvenly<T>(items: readonly T[], n: number): T[] {
  if (n <= 0) return [];
  if (items.length <= n) return [...items];
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]!);
}

/** Each token decoded on its own with the model's tokenizer (special tokens by name); ids as text without one. */
export async function modelTokenTexts(modelDir: string): Promise<TokenTexts> {
  try {
    const manifest = await loadManifest(modelDir);
    const path = join(modelDir, manifest.files.tokenizer);
    if (existsSync(path)) {
      const tok = await cachedTokenizer(path);
      return (ids) => ids.map((id) => tok.decode([id], { skipSpecial: false }));
    }
  } catch {
    // fall through: a trace without text is still a trace
  }
  return (ids) => ids.map((id) => `⟨${id}⟩`);
}

/** The kept record of one traced sample. */
export function tracedSample(step: number, row: CanonicalRow, s: Sample, reward: number, texts: TokenTexts): TracedSample {
  const commitSteps = [...(s.commitSteps ?? [])];
  return {
    step,
    promptId: row.task_id,
    promptText: row.prompt,
    tokenIds: [...s.tokenIds],
    tokenTexts: texts(s.tokenIds),
    commitSteps,
    reward,
    policyVersion: Number(s.policyVersion),
    orderCorrelation: orderCorrelation(commitSteps),
    nfe: s.nfe,
  };
}

/**
 * Keeps up to spec.traceSamplesPerStep of a step's scored samples (those that carry commit
 * steps). Never fails the step: a problem is logged and the step goes on.
 */
export async function recordStepTraces(
  jobId: string,
  step: number,
  spec: JobSpec,
  batch: readonly CanonicalRow[],
  scored: ReadonlyArray<{ smp: Sample; reward: number }>,
  deps: Pick<RunnerDeps, "store" | "metrics">,
  log: Logger,
): Promise<TracedSample[]> {
  const n = spec.traceSamplesPerStep ?? 0;
  if (n <= 0) return [];
  try {
    const traced = scored.filter(({ smp }) => (smp.commitSteps?.length ?? 0) > 0 && smp.commitSteps.length === smp.tokenIds.length);
    if (traced.length === 0) {
      log.warn("trace_samples_per_step is set but no sample of the step carries commit steps (rollout workers without trace support?)", { step });
      return [];
    }
    const texts = await modelTokenTexts(spec.modelDir);
    const kept = pickEvenly(traced, n).map(({ smp, reward }) => tracedSample(step, batch[Number(smp.promptId)]!, smp, reward, texts));
    await deps.store.appendTraces(jobId, kept);
    for (const t of kept) deps.metrics?.observeTrace(t.orderCorrelation, t.nfe, t.tokenIds.length);
    return kept;
  } catch (err) {
    log.warn("could not keep the step's traces", { step, err: (err as Error).message });
    return [];
  }
}
