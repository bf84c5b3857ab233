/**
 * Where `rlmesh trace` gets its traced samples: a job's stored traces (GetJobTraces), a one-off
 * decode of a prompt with a local model (onnxruntime, in-process, DecodingParams.trace), or a
 * traces JSON file written earlier (--json).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadTokenizer } from "@rlmesh/shared/tokenizer/index";
import { normalizeTraces, orderCorrelation, TraceFormatError, type TraceSample } from "@rlmesh/shared/trace/index";
import { loadRolloutModel, OrtRolloutEngine } from "@rlmesh/rollout/runtime/ort-rollout-engine";
import type { DecodeParamsInput } from "@rlmesh/rollout/decoding/decode-params";
import { jobClient, jobs } from "../job-client.js";
import { UsageError } from "../args.js";

/** A job's kept traces; a job with none is an error that says how to get some. */
export async function tracesOfJob(api: string, jobId: string, fromStep: number, limit: number): Promise<TraceSample[]> {
  const c = jobClient(api);
  try {
    const res = await jobs.traces(c, jobId, fromStep, limit);
    if (res.samples.length === 0) {
      const job = await jobs.get(c, jobId);
      const n = Number((job.spec as { traceSamplesPerStep?: number } | null)?.traceSamplesPerStep ?? 0);
      throw new Error(
        n > 0
          ? `job ${jobId} has no traced samples${fromStep > 0 ? ` from step ${fromStep}` : ""} yet (it keeps ${n} per step; it is at step ${job.step})`
          : `job ${jobId} kept no traces: submit it with "trace_samples_per_step": N (1..64) in the spec`,
      );
    }
    return normalizeTraces(res);
  } finally {
    c.close();
  }
}

/** Traces from a JSON file (a GetJobTracesResponse or a list of samples); malformed = TraceFormatError naming the file and field. */
export function tracesFromFile(path: string): TraceSample[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--input ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TraceFormatError(path, `not JSON (${(err as Error).message})`);
  }
  try {
    return normalizeTraces(json);
  } catch (err) {
    if (err instanceof TraceFormatError) throw new TraceFormatError(`${path}: ${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
}

export interface OneOffOptions {
  modelDir: string;
  /** The prompts (id and text) to decode, `samples` each. */
  prompts: Array<{ id: string; text: string }>;
  samples: number;
  params: DecodeParamsInput;
  threads?: number;
}

/** Decodes `samples` responses to each prompt with the model, traced; token texts from its tokenizer. */
export async function tracesOfOneOff(o: OneOffOptions): Promise<TraceSample[]> {
  const model = await loadRolloutModel(o.modelDir);
  const tok = await loadTokenizer(join(o.modelDir, model.manifest.files.tokenizer));
  const engine = await OrtRolloutEngine.create({ model, replicas: 1, ...(o.threads ? { intraOpNumThreads: o.threads } : {}) });
  try {
    const res = await engine.generateSamples(
      o.prompts.map((p) => ({ promptId: p.id, prompt: p.text, samples: o.samples })),
      { ...o.params, trace: true },
    );
    const textOf = new Map(o.prompts.map((p) => [p.id, p.text]));
    return res.samples.map((s) => {
      const commitSteps = s.commitSteps ?? [];
      if (commitSteps.length !== s.tokenIds.length) throw new Error(`the decoder returned ${commitSteps.length} commit steps for ${s.tokenIds.length} tokens`);
      return {
        promptId: o.prompts.length === 1 ? `sample ${s.sampleIndex + 1}` : o.samples === 1 ? s.promptId : `${s.promptId} #${s.sampleIndex + 1}`,
        promptText: textOf.get(s.promptId) ?? "",
        tokenIds: s.tokenIds,
        tokenTexts: s.tokenIds.map((id) => tok.decode([id], { skipSpecial: false })),
        commitSteps,
        nfe: s.nfe,
        policyVersion: s.policyVersion,
        orderCorrelation: orderCorrelation(commitSteps),
      };
    });
  } finally {
    await engine.close();
  }
}
