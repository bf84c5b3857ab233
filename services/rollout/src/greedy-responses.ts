import { resolve } from "node:path";
import { createLogger, type DecodingParamsIn, type GenerateRequest, type Logger } from "@rlmesh/shared";
import { loadRolloutModel, OrtRolloutEngine } from "./runtime/ort-rollout-engine.js";
import { ProtoRolloutEngine } from "./service/proto-rollout-engine.js";

/** Decoding for evaluation: greedy, otherwise the serving defaults (dual cache, threshold 0.9). */
export const GREEDY_EVAL_DECODING: DecodingParamsIn = {
  temperature: 0,
  topP: 1,
  topK: 0,
  maxNewTokens: 64,
  blockLength: 32,
  threshold: 0.9,
  cache: "dual",
  seed: 1,
};

/**
 * One greedy response per task with the model in `modelDir`, run in-process on onnxruntime
 * (for `rlmesh eval --model` and tests); returns task id → response text.
 */
export async function generateGreedyResponses(
  modelDir: string,
  tasks: readonly { task_id: string; prompt: string }[],
  opts: { maxNewTokens?: number; replicas?: number; logger?: Logger } = {},
): Promise<Map<string, string>> {
  const engine = new ProtoRolloutEngine(
    await OrtRolloutEngine.create({
      model: await loadRolloutModel(resolve(modelDir)),
      replicas: opts.replicas ?? 1,
      logger: opts.logger ?? createLogger("eval", { level: "warn" }),
    }),
  );
  try {
    const req = {
      prompts: tasks.map((t, i) => ({ id: String(i), text: t.prompt })),
      samplesPerPrompt: 1,
      params: { ...GREEDY_EVAL_DECODING, maxNewTokens: opts.maxNewTokens ?? GREEDY_EVAL_DECODING.maxNewTokens },
    } as unknown as GenerateRequest;
    engine.validate(req);
    const res = await engine.generate(req, new AbortController().signal);
    return new Map((res.samples ?? []).map((s) => [tasks[Number(s.promptId)]!.task_id, s.text ?? ""]));
  } finally {
    await engine.close();
  }
}
