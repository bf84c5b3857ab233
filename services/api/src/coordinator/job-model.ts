// A job's model at SubmitJob: the spec's model directory must load (the same checks a rollout
// worker and the learner make), and be the model the mesh's rollout workers serve — the same
// manifest name and weights fingerprint (ModelInfo.model_fingerprint), whatever its path.
import { createClient, FailedPreconditionError, InvalidArgumentError, loadProto, type Logger, type ModelInfo, type RolloutServiceClient, type WorkerEntry } from "@rlmesh/shared";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadModel, MANIFEST_FILE, ModelLoadError, type LoadedModel } from "@rlmesh/shared/model/index";
import { cachedModelFingerprint } from "@rlmesh/shared/model/model-fingerprint";
import type { NormalizedJobSpec as JobSpec } from "../job-spec.js";

/** How long SubmitJob waits for one worker's GetModelInfo before leaving that worker out. */
export const MODEL_INFO_TIMEOUT_MS = 5_000;

/** A model some service serves: who, its manifest name and weights fingerprint ("" = not reported). */
export interface ServedModel {
  servedBy: string;
  modelName: string;
  fingerprint: string;
}

export interface JobModelCheckDeps {
  /** What the mesh serves now (the live rollout workers); empty = nothing to compare with yet. */
  servedModels: () => Promise<ServedModel[]>;
}

/** The spec's model directory, loaded and validated; INVALID_ARGUMENT naming spec.model_dir, the file and the field. */
export async function loadJobModel(spec: JobSpec): Promise<LoadedModel> {
  if (!existsSync(join(spec.modelDir, MANIFEST_FILE))) {
    throw new InvalidArgumentError("spec.model_dir", `${spec.modelDir} has no ${MANIFEST_FILE}: not a model directory`);
  }
  try {
    return await loadModel(spec.modelDir);
  } catch (err) {
    if (err instanceof ModelLoadError) throw new InvalidArgumentError("spec.model_dir", `${spec.modelDir}: ${err.message}`);
    throw err;
  }
}

/**
 * Refuses a job whose model does not load (INVALID_ARGUMENT) or is not the model the rollout
 * workers serve (FAILED_PRECONDITION naming both models). The learner makes the same comparison
 * at StartJob, against the workers or, with none registered, its own RLMESH_MODEL_DIR.
 */
export async function checkJobModel(spec: JobSpec, deps: JobModelCheckDeps): Promise<void> {
  const { name, fingerprint, weightDtype } = await validatedModel(spec);
  const served = await deps.servedModels();
  if (served.length === 0) return;
  for (const s of served) {
    const sameName = s.modelName === name;
    const sameWeights = !s.fingerprint || s.fingerprint === fingerprint;
    if (sameName && sameWeights) continue;
    const what = sameName ? `the same name with other weights` : `another model`;
    throw new FailedPreconditionError(
      `spec.model_dir: ${spec.modelDir} is model "${name}" (${weightDtype === "float16" ? "float16 weights (import-hf --dtype float16), " : ""}weights sha256 ${fingerprint.slice(0, 12)}…), but ${s.servedBy} serves ` +
        `"${s.modelName}"${s.fingerprint ? ` (weights sha256 ${s.fingerprint.slice(0, 12)}…)` : ""}: ${what}. A job runs on the model the mesh serves: ` +
        `submit the model directory the workers run, or restart the rollout workers and the learner with RLMESH_MODEL_DIR=${spec.modelDir}`,
    );
  }
}

/** A model directory validated before, by its files' sizes and times: loading a large model is not repeated per submit. */
const validatedModels = new Map<string, { key: string; name: string; fingerprint: string; weightDtype: string }>();

function directoryKey(dir: string): string {
  return readdirSync(dir)
    .sort()
    .map((f) => {
      const st = statSync(join(dir, f));
      return `${f}:${st.size}:${st.mtimeMs}`;
    })
    .join("|");
}

async function validatedModel(spec: JobSpec): Promise<{ name: string; fingerprint: string; weightDtype: string }> {
  let key = "";
  try {
    key = directoryKey(spec.modelDir);
  } catch {
    // unreadable: loadJobModel says what is wrong
  }
  const hit = validatedModels.get(spec.modelDir);
  if (key && hit?.key === key) return hit;
  const loaded = await loadJobModel(spec);
  const entry = {
    key,
    name: loaded.manifest.name,
    fingerprint: await cachedModelFingerprint(loaded),
    weightDtype: loaded.manifest.weight_dtype ?? "float32",
  };
  if (key) validatedModels.set(spec.modelDir, entry);
  return entry;
}

function getModelInfo(client: RolloutServiceClient, timeoutMs: number): Promise<ModelInfo> {
  return new Promise((resolve, reject) =>
    client.getModelInfo({}, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

/**
 * The models the live rollout workers serve, asked over gRPC (GetModelInfo). A registered
 * worker that does not answer in time is left out (logged): its registration may be stale.
 */
export async function rolloutWorkerModels(workers: () => Promise<WorkerEntry[]>, logger: Logger, timeoutMs = MODEL_INFO_TIMEOUT_MS): Promise<ServedModel[]> {
  const live = await workers();
  const answers = await Promise.all(
    live.map(async (w) => {
      const client = createClient(loadProto().proto.rlmesh.v1.RolloutService, w.address);
      try {
        const info = await getModelInfo(client, timeoutMs);
        return { servedBy: `rollout worker ${info.workerId || w.id}`, modelName: info.modelName, fingerprint: info.modelFingerprint };
      } catch (err) {
        logger.warn("rollout worker did not answer GetModelInfo; its model is not compared", { worker: w.id, address: w.address, err: (err as Error).message });
        return null;
      } finally {
        client.close();
      }
    }),
  );
  return answers.filter((a): a is ServedModel => a !== null);
}
