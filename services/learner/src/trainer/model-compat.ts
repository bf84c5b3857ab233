// Whether a job's model can be served by the rollout workers: the same architecture (token ids,
// context, and every float tensor with its shape). A job's weights are pushed into the graph the
// workers already run, so anything else would be refused by them or, worse, mixed.
import type { ModelInfo } from "@rlmesh/shared";
import { loadModel, parseModel, readWeights, type ModelManifest } from "@rlmesh/shared/model/index";
import { modelFingerprint } from "@rlmesh/shared/model/model-fingerprint";

/** What identifies a model's architecture: its token ids, context and float tensors. */
export interface ModelShape {
  manifest: ModelManifest;
  /** Every float initializer of the graph (trainable weights and constants), in graph order. */
  weights: { name: string; shape: number[] }[];
  /** sha256 of the model directory's weights (shared model-fingerprint.ts), when known. */
  fingerprint?: string;
}

/** A job's model does not fit what the rollout workers serve (FAILED_PRECONDITION naming model_dir). */
export class ModelMismatchError extends Error {
  override name = "ModelMismatchError";
  readonly field = "model_dir";
}

/**
 * A model the learner cannot train (FAILED_PRECONDITION naming model_dir): its weights are in ONNX
 * external data, i.e. above 2 GB, and jax-js on WebAssembly has one 32-bit address space (4 GiB)
 * for the weights, their gradients and the activations together.
 */
export class UntrainableModelError extends ModelMismatchError {
  override name = "UntrainableModelError";
}

/** Throws UntrainableModelError when the learner cannot hold the model's weights and gradients. */
export function checkTrainable(modelDir: string, model: { externalDataFiles: readonly string[]; manifest: { name: string } }): void {
  if (model.externalDataFiles.length === 0) return;
  throw new UntrainableModelError(
    `model_dir: ${modelDir} (${model.manifest.name}) keeps its weights in ONNX external data (${model.externalDataFiles.join(", ")}: more than 2 GB); ` +
      "the learner differentiates with jax-js on WebAssembly, whose 4 GiB address space cannot hold those weights and their gradients. " +
      "Rollouts and evals run on such a model; GRPO training does not (see README, Bring your own model)",
  );
}

/** What a served model is compared on (a worker's ModelInfo, or a model directory's shape). */
export interface ServedShape {
  /** Who serves it, for the message: "rollout worker w1", "the learner's RLMESH_MODEL_DIR". */
  servedBy: string;
  modelName: string;
  vocabSize: number;
  maskId: number;
  padId: number;
  eosId: number;
  maxSeqLen: number;
  shiftedLogits: boolean;
  weights: { name: string; shape: number[] }[];
  /** sha256 of the served model directory's own weights ("" = not reported: the name alone is compared). */
  fingerprint: string;
}

export function servedShapeOfModelInfo(info: ModelInfo, servedBy: string): ServedShape {
  return {
    servedBy,
    modelName: info.modelName,
    vocabSize: info.vocabSize,
    maskId: info.maskId,
    padId: info.padId,
    eosId: info.eosId,
    maxSeqLen: info.maxSeqLen,
    shiftedLogits: info.shiftedLogits,
    weights: info.weights.map((w) => ({ name: w.name, shape: w.shape.map(Number) })),
    fingerprint: info.modelFingerprint,
  };
}

export function servedShapeOfModel(model: ModelShape, servedBy: string): ServedShape {
  const m = model.manifest;
  return {
    servedBy,
    modelName: m.name,
    vocabSize: m.vocab_size,
    maskId: m.mask_id,
    padId: m.pad_id,
    eosId: m.eos_id,
    maxSeqLen: m.max_seq_len,
    shiftedLogits: m.shifted_logits,
    weights: model.weights,
    fingerprint: model.fingerprint ?? "",
  };
}

/** The first difference between a job's model and a served one, or null when they fit. */
export function architectureDifference(job: ServedShape, served: ServedShape): string | null {
  const scalars = ["vocabSize", "maskId", "padId", "eosId", "maxSeqLen", "shiftedLogits"] as const;
  for (const k of scalars) {
    if (job[k] !== served[k]) return `${k} is ${String(job[k])}, ${served.servedBy} serves ${String(served[k])}`;
  }
  const theirs = new Map(served.weights.map((w) => [w.name, w.shape]));
  for (const w of job.weights) {
    const s = theirs.get(w.name);
    if (!s) return `weight ${w.name} is not in the model ${served.servedBy} serves`;
    if (s.length !== w.shape.length || s.some((d, i) => d !== w.shape[i])) {
      return `weight ${w.name} has shape [${w.shape.join(", ")}], ${served.servedBy} serves [${s.join(", ")}]`;
    }
  }
  if (served.weights.length !== job.weights.length) {
    const mine = new Set(job.weights.map((w) => w.name));
    const extra = served.weights.find((w) => !mine.has(w.name));
    return `${served.servedBy} serves weight ${extra?.name ?? "?"} that the model does not have`;
  }
  return null;
}

/**
 * The job's model and a served one are not the same model: another manifest name, or other
 * weights (fingerprints compared when both are known). Null when they are the same.
 */
export function identityDifference(job: ServedShape, served: ServedShape): string | null {
  if (job.modelName !== served.modelName) return `the model is named ${JSON.stringify(job.modelName)}, ${served.servedBy} serves ${JSON.stringify(served.modelName)}`;
  if (job.fingerprint && served.fingerprint && job.fingerprint !== served.fingerprint) {
    return `its weights fingerprint is ${job.fingerprint.slice(0, 12)}…, ${served.servedBy} serves ${served.fingerprint.slice(0, 12)}…`;
  }
  return null;
}

/**
 * Throws ModelMismatchError naming model_dir when the job's model differs from any served one:
 * another architecture, or the same architecture under another name or with other weights (the
 * job's model must be the model the mesh runs; the path does not matter).
 */
export function checkServedArchitecture(modelDir: string, model: ModelShape, served: readonly ServedShape[]): void {
  const job = servedShapeOfModel(model, modelDir);
  for (const s of served) {
    const diff = architectureDifference(job, s);
    if (diff) {
      throw new ModelMismatchError(
        `model_dir: ${modelDir} (${job.modelName}) is another architecture than ${s.servedBy} serves (${s.modelName}): ${diff}; ` +
          "rollout workers only take weights of the graph they run",
      );
    }
    const other = identityDifference(job, s);
    if (other) {
      throw new ModelMismatchError(
        `model_dir: ${modelDir} (${job.modelName}) is not the model ${s.servedBy} serves (${s.modelName}): ${other}; ` +
          "a job runs on the model the mesh serves (start the services with this model directory, or submit the one they serve)",
      );
    }
  }
}

const referenceShapes = new Map<string, Promise<ServedShape>>();

/** The shape of a model directory (the learner's RLMESH_MODEL_DIR), loaded once. */
export function referenceShape(modelDir: string): Promise<ServedShape> {
  let p = referenceShapes.get(modelDir);
  if (!p) {
    p = loadModel(modelDir).then(async (m) =>
      servedShapeOfModel(
        {
          manifest: m.manifest,
          weights: [...readWeights(parseModel(m.modelBytes))].map(([name, w]) => ({ name, shape: [...w.shape] })),
          fingerprint: await modelFingerprint(m),
        },
        `the mesh's model ${modelDir} (RLMESH_MODEL_DIR of the learner; no rollout worker is registered)`,
      ),
    );
    p.catch(() => referenceShapes.delete(modelDir));
    referenceShapes.set(modelDir, p);
  }
  return p;
}
