// The learner's jobs: one GrpoTrainer at a time, for the job the coordinator started last. Each
// job has its own checkpoint directory (<root>/jobs/<job id>), so its policy versions count from
// 0, its optimizer and collapse guard start fresh, and a restarted learner resumes the right job
// (<root>/active-job.json names it).
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InvalidArgumentError, type Logger } from "@rlmesh/shared";
import { CheckpointStore } from "../checkpoint/checkpoint-store.js";
import { GrpoTrainer, splitWeights, type GrpoTrainerOptions } from "./grpo-trainer.js";
import { checkServedArchitecture, type ModelShape, type ServedShape } from "./model-compat.js";
import { DEFAULT_WARMUP_MAX_HEAP_MIB, warmupShapes, type JobTrainShape, type WarmupRecipe } from "./warmup.js";
import { JobNotStartedError, type InitFromInput, type StartedJob, type StartJobInput, type TrainerHost } from "./trainer.js";

export interface JobTrainersOptions {
  /** Root of every job's checkpoints (RLMESH_CHECKPOINT_DIR). */
  root: string;
  logger: Logger;
  /** Options of every job's trainer (model, checkpoint directory and initial weights are per job). */
  trainer: Omit<GrpoTrainerOptions, "modelDir" | "checkpointDir" | "initialWeights" | "validateModel" | "logger">;
  /** The architectures a job's model must match: what the rollout workers serve now. */
  servedModels?: () => Promise<ServedShape[]>;
  /**
   * The batch shapes of a job's TrainSteps, compiled by warmUp (trainer/warmup.ts); unset: no
   * warm-up (RLMESH_LEARNER_WARMUP=0).
   */
  warmup?: WarmupRecipe;
  /** Opens a job's trainer (a seam for tests). @defaultValue GrpoTrainer.open */
  openTrainer?: (opts: GrpoTrainerOptions) => Promise<GrpoTrainer>;
}

/** The record of the learner's job, read at start-up. */
interface ActiveJobRecord {
  jobId: string;
  modelDir: string;
  initFrom: InitFromInput | null;
}

const ACTIVE_FILE = "active-job.json";
/** Job ids become directory names: one path segment of safe characters. */
const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkJobId(field: string, jobId: string): string {
  if (!jobId) throw new InvalidArgumentError(field, "is required");
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new InvalidArgumentError(field, `must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit, got ${JSON.stringify(jobId)}`);
  }
  return jobId;
}

export class JobTrainers implements TrainerHost {
  /** The learner's job: its trainer, and its TrainStep shape when its StartJob gave one. */
  private active: { jobId: string; trainer: GrpoTrainer; trainShape: JobTrainShape | null } | null = null;
  private lock: Promise<unknown> = Promise.resolve();
  private readonly open: (opts: GrpoTrainerOptions) => Promise<GrpoTrainer>;

  private constructor(private readonly opts: JobTrainersOptions) {
    this.open = opts.openTrainer ?? ((o) => GrpoTrainer.open(o));
  }

  /** The learner at start-up: goes on with the job it ran when it stopped, if any. */
  static async open(opts: JobTrainersOptions): Promise<JobTrainers> {
    const host = new JobTrainers(opts);
    const rec = await readActive(opts.root);
    if (rec) {
      opts.logger.info("resuming the learner's job", { job: rec.jobId, modelDir: rec.modelDir });
      await host.startJob(rec);
    }
    return host;
  }

  /** The job the learner trains now, or null before the first StartJob. */
  current(): { jobId: string; trainer: GrpoTrainer } | null {
    return this.active;
  }

  /** The trainer of `jobId`; JobNotStartedError when the learner runs another job (or none). */
  trainerFor(jobId: string): GrpoTrainer {
    if (this.active && this.active.jobId === jobId) return this.active.trainer;
    throw new JobNotStartedError(
      this.active
        ? `job_id: the learner trains job ${this.active.jobId}, not ${jobId}; the coordinator must StartJob ${jobId} first`
        : `job_id: no job is started on the learner; the coordinator must StartJob ${jobId} first`,
    );
  }

  /**
   * Makes `jobId` the learner's job: its own checkpoints when it has some (resume), else its
   * model_dir's weights (or init_from's) at version 0 with a fresh optimizer and guard. Throws
   * InvalidArgumentError naming the field, ModelMismatchError naming model_dir.
   */
  startJob(input: StartJobInput): Promise<StartedJob> {
    const run = this.lock.then(() => this.startLocked(input));
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Starts the warm-up of `jobId`'s trainer in the background (no-op without a warm-up recipe, for
   * another job than the learner's, or when it ran already): the batch shapes the recipe can
   * produce are compiled, one at a time under the trainer's lock, until the job's first TrainStep
   * (which waits for the shape in progress only; nothing is compiled twice) or the time bound.
   * Call it after StartJob has answered
   * and pushed: each shape's compilation keeps the event loop busy for seconds. Errors are
   * logged (the TrainSteps then compile their own shapes).
   */
  warmUp(jobId: string): void {
    const active = this.active;
    // The job's own shape (its StartJob's train_shape) within the configured bounds.
    const recipe = this.opts.warmup && active?.trainShape ? { ...this.opts.warmup, ...active.trainShape } : this.opts.warmup;
    // A TrainStep that reached the trainer first (a retried step at a restarted learner) ends the
    // warm-up's window: shapes compiled between steps would hold those steps and their pushes up.
    if (!recipe || !active || active.jobId !== jobId || active.trainer.warmupReport() || active.trainer.hasTrainSteps) return;
    const shapes = warmupShapes(recipe, active.trainer.modelManifest.max_seq_len);
    this.opts.logger.info("learner warm-up: compiling the job's batch shapes", {
      job: jobId,
      shapeFrom: active.trainShape ? "the job's train_shape" : "the learner's configuration",
      rows: recipe.rows,
      seqLens: shapes.map((s) => s.seqLen).join(","),
      maxSeconds: recipe.maxSeconds,
      maxHeapMiB: recipe.maxHeapMiB ?? DEFAULT_WARMUP_MAX_HEAP_MIB,
    });
    active.trainer.warmup(shapes, recipe).catch((err: unknown) => {
      this.opts.logger.warn("learner warm-up failed; TrainSteps compile their own batch shapes", { job: jobId, err: err instanceof Error ? err.message : String(err) });
    });
  }

  jobDir(jobId: string): string {
    return join(this.opts.root, "jobs", checkJobId("job_id", jobId));
  }

  dispose(): void {
    this.active?.trainer.dispose();
    this.active = null;
  }

  /** At shutdown: the active job's warm-up stops (the shape in progress finishes), then dispose. */
  async close(): Promise<void> {
    await this.active?.trainer.stopWarmup("the learner is shutting down");
    this.dispose();
  }

  private async startLocked(input: StartJobInput): Promise<StartedJob> {
    const jobId = checkJobId("job_id", input.jobId);
    if (!input.modelDir) throw new InvalidArgumentError("model_dir", "is required");
    const initFrom = normalizeInitFrom(input.initFrom, jobId);
    if (this.active?.jobId === jobId) {
      if (input.trainShape) this.active.trainShape = input.trainShape;
      const s = this.active.trainer.status();
      return { jobId, policyVersion: s.policyVersion, resumed: true, modelName: s.modelName ?? "", initSource: "resume" };
    }
    const dir = this.jobDir(jobId);
    const resuming = (await new CheckpointStore(dir).listSteps()).length > 0;
    const initialWeights = resuming || !initFrom ? undefined : await this.initialWeights(initFrom);
    const served = this.opts.servedModels ? await this.opts.servedModels() : [];
    const trainer = await this.open({
      ...this.opts.trainer,
      logger: this.opts.logger.child({ job: jobId }),
      modelDir: input.modelDir,
      checkpointDir: dir,
      ...(initialWeights ? { initialWeights } : {}),
      validateModel: (model: ModelShape) => checkServedArchitecture(input.modelDir, model, served),
    });
    const previous = this.active;
    this.active = { jobId, trainer, trainShape: input.trainShape ?? null };
    // The previous job's warm-up may be compiling a shape: let it finish before freeing its kernels.
    await previous?.trainer.stopWarmup();
    previous?.trainer.dispose();
    await writeActive(this.opts.root, { jobId, modelDir: input.modelDir, initFrom });
    const s = trainer.status();
    const initSource = resuming ? "resume" : initFrom?.job ? `job:${initFrom.job}` : initFrom?.checkpoint ? `checkpoint:${initFrom.checkpoint}` : "model_dir";
    this.opts.logger.info("job started on the learner", { job: jobId, policyVersion: s.policyVersion, initSource, previous: previous?.jobId ?? "" });
    return { jobId, policyVersion: s.policyVersion, resumed: resuming, modelName: s.modelName ?? "", initSource };
  }

  private async initialWeights(initFrom: InitFromInput): Promise<GrpoTrainerOptions["initialWeights"]> {
    const [field, dir] = initFrom.job ? ["init_from.job", this.jobDir(initFrom.job)] : ["init_from.checkpoint", initFrom.checkpoint!];
    const ck = await new CheckpointStore(dir).loadLatest().catch((err: unknown) => {
      throw new InvalidArgumentError(field, `cannot read checkpoints in ${dir}: ${(err as Error).message}`);
    });
    if (!ck) {
      throw new InvalidArgumentError(
        field,
        initFrom.job ? `job ${initFrom.job} has no checkpoint on this learner (${dir})` : `no valid checkpoint in ${dir}`,
      );
    }
    return { tensors: splitWeights(ck.weights).current, field };
  }
}

function normalizeInitFrom(initFrom: InitFromInput | null | undefined, jobId: string): InitFromInput | null {
  if (!initFrom || (!initFrom.job && !initFrom.checkpoint)) return null;
  if (initFrom.job && initFrom.checkpoint) throw new InvalidArgumentError("init_from", "give job or checkpoint, not both");
  if (initFrom.job) {
    checkJobId("init_from.job", initFrom.job);
    if (initFrom.job === jobId) throw new InvalidArgumentError("init_from.job", `is the job itself (${jobId})`);
    return { job: initFrom.job };
  }
  return { checkpoint: initFrom.checkpoint! };
}

async function readActive(root: string): Promise<ActiveJobRecord | null> {
  let text: string;
  try {
    text = await readFile(join(root, ACTIVE_FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  const rec = JSON.parse(text) as ActiveJobRecord;
  if (!rec.jobId || !rec.modelDir) throw new Error(`${join(root, ACTIVE_FILE)} names no job or model_dir; remove it to start with no job`);
  return rec;
}

/** Written atomically (temp file, rename): a crash leaves the old record or the new one. */
async function writeActive(root: string, rec: ActiveJobRecord): Promise<void> {
  await mkdir(root, { recursive: true });
  const tmp = join(root, `.${ACTIVE_FILE}.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(rec) + "\n");
  await rename(tmp, join(root, ACTIVE_FILE));
}
