import { existsSync } from "node:fs";
import {
  check,
  InvalidArgumentError,
  type DecodingParams,
  type GrpoParams,
  type JobSpec,
  type JobSpecIn,
  type SandboxLimits,
  type DatasetSpec,
} from "@rlmesh/shared";
import {
  DECODING_ALGS as SHARED_DECODING_ALGS,
  DECODING_CACHE_MODES,
  DEFAULT_ALG,
  DEFAULT_BLOCK_LENGTH,
  DEFAULT_CACHE,
  DEFAULT_MAX_STALENESS,
  DEFAULT_THRESHOLD,
} from "@rlmesh/shared/decoding-defaults";
import {
  DEFAULT_LR_DECAY_START,
  DEFAULT_LR_MIN_RATIO,
  GRPO_ADV_ESTIMATORS,
  GRPO_DEFAULTS,
  GRPO_LOSS_AGGREGATIONS,
  GRPO_LOSS_WEIGHTS,
  LR_DECAYS,
} from "@rlmesh/shared/grpo-defaults";
import { checkGrpoParams } from "@rlmesh/shared/grpo-params-check";
import { normalizeInitFrom, type NormalizedInitFrom } from "./init-from-spec.js";

/** Defaults for a job spec's unset fields (the shipped tiny model's recipe). An explicit 0 is never "use the default". */
export const DEFAULT_GROUP_SIZE = 8;
export const DEFAULT_PROMPTS_PER_STEP = 8;
export const DEFAULT_STEPS = 20;
export const DEFAULT_EVAL_INTERVAL = 0;
export { DEFAULT_MAX_STALENESS };
export const DATASET_FORMATS = ["auto", "humaneval", "mbpp", "lcb", "rlmesh"] as const;
export const DECODING_ALGS = SHARED_DECODING_ALGS;
export const CACHE_MODES = DECODING_CACHE_MODES;
export const ADV_ESTIMATORS = GRPO_ADV_ESTIMATORS;
export const LOSS_AGGS = GRPO_LOSS_AGGREGATIONS;
export const LOSS_WEIGHTS = GRPO_LOSS_WEIGHTS;
/**
 * What an unset `spec.grpo` field means (shared/src/grpo-defaults.ts; the learner's recipe is made
 * of the same values). The spec keeps unset fields unset: the learner applies these.
 */
export const DEFAULT_GRPO: Readonly<GrpoParams> = GRPO_DEFAULTS;
export const JOB_TASKS = ["complete", "infill"] as const;
/** DreamOn's defaults: start from 16 masks (no length oracle), grow up to 64. */
export const DEFAULT_INFILL_INITIAL_LENGTH = 16;
export const DEFAULT_INFILL_MAX_LENGTH = 64;

export const DEFAULT_DECODING: DecodingParams = {
  alg: DEFAULT_ALG,
  algTemp: 0,
  temperature: 1.0,
  topP: 0.95,
  topK: 0,
  steps: 0,
  maxNewTokens: 64,
  blockLength: DEFAULT_BLOCK_LENGTH,
  threshold: DEFAULT_THRESHOLD,
  factor: 0,
  cache: DEFAULT_CACHE,
  padPenalty: 3.0,
  seed: 0,
};

/** Per-candidate sandbox limits of a job (0 = the executor's default). */
export const DEFAULT_LIMITS: SandboxLimits = { timeoutMsPerTest: 0, totalTimeoutMs: 0, memoryMb: 0, outputBytes: 0 };

/** A validated dataset spec: every field present. */
export interface NormalizedDatasetSpec {
  path: string;
  format: string;
  minTests: number;
  dedupe: boolean;
  limit: number;
}

/** A validated spec: every field present, defaults filled in. */
export interface NormalizedJobSpec {
  name: string;
  modelDir: string;
  dataset: NormalizedDatasetSpec;
  groupSize: number;
  promptsPerStep: number;
  steps: number;
  decoding: DecodingParams;
  grpo: GrpoParams;
  limits: SandboxLimits;
  seed: number;
  evalDataset: NormalizedDatasetSpec;
  evalInterval: number;
  overlap: boolean;
  maxStaleness: number;
  extraEvalDatasets: NormalizedDatasetSpec[];
  evalSamples: number;
  maxMinutes: number;
  oversample: number;
  initFrom: NormalizedInitFrom | null;
  /** complete | infill. */
  task: (typeof JOB_TASKS)[number];
  traceSamplesPerStep: number;
  infill: NormalizedInfillParams;
  /** Curriculum sampling (window 0 = off). */
  curriculum: NormalizedCurriculumParams;
  /** Learning-rate decay over the run (`coordinator/lr-decay.ts`; "constant" = off). */
  lrSchedule: NormalizedLrSchedule;
}

/** A job's learning-rate decay over its run (applied by the coordinator per step). */
export interface NormalizedLrSchedule {
  decay: (typeof LR_DECAYS)[number];
  /** Fraction of the run, in [0, 1), at which the decay begins. */
  decayStart: number;
  /** The factor at the end of the run, in (0, 1]. */
  minRatio: number;
}

/** Curriculum sampling settings (`services/api/src/coordinator/batch-sampler.ts`). */
export interface NormalizedCurriculumParams {
  /** Skip a key whose last `window` visits were saturated (0 = off). */
  window: number;
  /** Chance that a skipped key's row is drawn anyway. */
  explore: number;
}

/** Exploration share of the curriculum sampler when `curriculum.explore` is unset. */
export const DEFAULT_CURRICULUM_EXPLORE = 0.1;

/** Infill task settings (only used when task is infill). */
export interface NormalizedInfillParams {
  initialLength: number;
  maxLength: number;
  /** false = fixed length (initialLength tokens); true = expand/delete (the model must support it). */
  variableLength: boolean;
  /** Variable length's length cuts sent with every Infill call; unset = the model's manifest default. */
  eosCut?: number;
  expandCut?: number;
  /** Variable length's length search radius for the job's evals (0 unless the spec sets it; training rollouts never search; absent in a spec stored before the field existed). */
  lengthSearch?: number;
}

const orDefault = <T>(v: T | undefined | null, d: T): T => (v === undefined || v === null || v === 0 || v === "" ? d : v);

function dataset(field: string, d: Partial<DatasetSpec> | null | undefined, required: boolean): NormalizedDatasetSpec {
  if (!d || !d.path) {
    if (required) throw new InvalidArgumentError(`${field}.path`, "is required");
    return { path: "", format: "auto", minTests: 0, dedupe: false, limit: 0 };
  }
  if (!existsSync(d.path)) throw new InvalidArgumentError(`${field}.path`, `file not found: ${d.path}`);
  return {
    path: d.path,
    format: check.oneOf(`${field}.format`, orDefault(d.format, "auto"), DATASET_FORMATS),
    minTests: check.int(`${field}.min_tests`, d.minTests ?? 0, 0, 10_000),
    dedupe: Boolean(d.dedupe),
    limit: check.int(`${field}.limit`, d.limit ?? 0, 0, 10_000_000),
  };
}

const defined = (o: object | null | undefined) =>
  Object.fromEntries(Object.entries(o ?? {}).filter(([k, v]) => v !== undefined && v !== null && !k.startsWith("_")));

/** Fills unset decoding fields with the job defaults and validates the result (field named on error). */
export function normalizeDecoding(field: string, p: Partial<DecodingParams> | null | undefined): DecodingParams {
  const d = { ...DEFAULT_DECODING, ...defined(p) } as Required<DecodingParams>;
  check.oneOf(`${field}.alg`, d.alg, DECODING_ALGS);
  check.oneOf(`${field}.cache`, d.cache, CACHE_MODES);
  check.range(`${field}.alg_temp`, d.algTemp, 0, 100);
  check.range(`${field}.temperature`, d.temperature, 0, 10);
  check.range(`${field}.top_p`, d.topP, 0, 1);
  check.int(`${field}.top_k`, d.topK, 0, 1_000_000);
  check.int(`${field}.max_new_tokens`, d.maxNewTokens, 1, 8192);
  check.int(`${field}.block_length`, d.blockLength, 1, 8192);
  check.int(`${field}.steps`, d.steps, 0, 8192);
  check.range(`${field}.threshold`, d.threshold, 0, 1);
  check.range(`${field}.factor`, d.factor, 0, 100);
  check.range(`${field}.pad_penalty`, d.padPenalty, 0, 100);
  if (d.lookahead !== undefined) check.int(`${field}.lookahead`, d.lookahead, 0, 8192);
  return d;
}

/**
 * Validates the GRPO fields that are set by the learner's own rule (shared checkGrpoParams), so a
 * job accepted here never fails its first TrainStep on a value; unset ones stay unset and take
 * the learner's defaults.
 */
function normalizeGrpo(p: Partial<GrpoParams> | null | undefined): GrpoParams {
  const g = defined(p) as GrpoParams;
  if (g.tMin !== undefined && g.tMax !== undefined && g.tMin > g.tMax) {
    throw new InvalidArgumentError("spec.grpo.t_min", `must be <= t_max (${g.tMax}), got ${g.tMin}`);
  }
  checkGrpoParams(g, "spec.grpo");
  return g;
}

/**
 * Validates a submitted spec and fills defaults. Throws InvalidArgumentError whose message starts
 * with the proto field path (e.g. `spec.group_size: must be an integer in [2, 1024], got 1`).
 */
export function normalizeSpec(spec: JobSpecIn | null | undefined): NormalizedJobSpec {
  if (!spec) throw new InvalidArgumentError("spec", "is required");
  const s = spec as Partial<JobSpec>;
  const modelDir = check.nonEmpty("spec.model_dir", s.modelDir);
  if (!existsSync(modelDir)) throw new InvalidArgumentError("spec.model_dir", `directory not found: ${modelDir}`);
  const limits = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(s.limits ?? {})) if (typeof v === "number" && v > 0) (limits as Record<string, number>)[k] = v;
  check.int("spec.limits.memory_mb", limits.memoryMb, 0, 65_536);
  check.int("spec.limits.timeout_ms_per_test", limits.timeoutMsPerTest, 0, 600_000);
  return {
    name: s.name ?? "",
    modelDir,
    dataset: dataset("spec.dataset", s.dataset, true),
    groupSize: check.int("spec.group_size", s.groupSize ?? DEFAULT_GROUP_SIZE, 2, 1024),
    promptsPerStep: check.int("spec.prompts_per_step", s.promptsPerStep ?? DEFAULT_PROMPTS_PER_STEP, 1, 4096),
    steps: check.int("spec.steps", s.steps ?? DEFAULT_STEPS, 1, 1_000_000),
    decoding: normalizeDecoding("spec.decoding", s.decoding),
    grpo: normalizeGrpo(s.grpo),
    limits,
    seed: check.int("spec.seed", Number(s.seed ?? 0), 0),
    evalDataset: dataset("spec.eval_dataset", s.evalDataset, false),
    evalInterval: check.int("spec.eval_interval", s.evalInterval ?? DEFAULT_EVAL_INTERVAL, 0, 1_000_000),
    overlap: Boolean(s.overlap),
    maxStaleness: check.int("spec.max_staleness", s.maxStaleness ?? DEFAULT_MAX_STALENESS, 0, 1000),
    extraEvalDatasets: (s.extraEvalDatasets ?? []).map((d, i) => dataset(`spec.extra_eval_datasets[${i}]`, d, true)),
    evalSamples: check.int("spec.eval_samples", s.evalSamples ?? 0, 0, 1024),
    maxMinutes: check.range("spec.max_minutes", s.maxMinutes ?? 0, 0, 1e6),
    // 0 and 1 both mean off (documented in jobs.proto).
    oversample: Math.max(1, check.int("spec.oversample", s.oversample ?? 1, 0, 64)),
    initFrom: normalizeInitFrom("spec.init_from", s.initFrom),
    task: check.oneOf("spec.task", s.task ?? "complete", JOB_TASKS),
    traceSamplesPerStep: check.int("spec.trace_samples_per_step", s.traceSamplesPerStep ?? 0, 0, 64),
    infill: normalizeInfill(s.infill),
    curriculum: normalizeCurriculum(s.curriculum),
    lrSchedule: normalizeLrSchedule(s.lrSchedule),
  };
}

/** `spec.lr_schedule`: decay one of LR_DECAYS, decay_start in [0, 1), min_ratio in (0, 1]. */
function normalizeLrSchedule(
  p: { decay?: string | null; decayStart?: number | null; minRatio?: number | null } | null | undefined,
): NormalizedLrSchedule {
  const decay = check.oneOf("spec.lr_schedule.decay", p?.decay ?? "constant", LR_DECAYS);
  const decayStart = p?.decayStart ?? DEFAULT_LR_DECAY_START;
  if (!Number.isFinite(decayStart) || decayStart < 0 || decayStart >= 1) {
    throw new InvalidArgumentError("spec.lr_schedule.decay_start", `must be in [0, 1), got ${decayStart}`);
  }
  const minRatio = p?.minRatio ?? DEFAULT_LR_MIN_RATIO;
  if (!Number.isFinite(minRatio) || minRatio <= 0 || minRatio > 1) {
    throw new InvalidArgumentError("spec.lr_schedule.min_ratio", `must be in (0, 1], got ${minRatio}`);
  }
  return { decay, decayStart, minRatio };
}

function normalizeCurriculum(p: Partial<NormalizedCurriculumParams> | null | undefined): NormalizedCurriculumParams {
  return {
    window: check.int("spec.curriculum.window", p?.window ?? 0, 0, 64),
    explore: check.range("spec.curriculum.explore", p?.explore ?? DEFAULT_CURRICULUM_EXPLORE, 0, 1),
  };
}

function normalizeInfill(p: Partial<NormalizedInfillParams> | null | undefined): NormalizedInfillParams {
  const initialLength = check.int("spec.infill.initial_length", p?.initialLength ?? DEFAULT_INFILL_INITIAL_LENGTH, 1, 4096);
  const maxLength = check.int("spec.infill.max_length", p?.maxLength ?? Math.max(DEFAULT_INFILL_MAX_LENGTH, initialLength), 1, 4096);
  if (maxLength < initialLength) {
    throw new InvalidArgumentError("spec.infill.max_length", `must be >= initial_length (${initialLength}), got ${maxLength}`);
  }
  const variableLength = p?.variableLength ?? true;
  const lengthSearch = check.int("spec.infill.length_search", p?.lengthSearch ?? 0, 0, 16);
  if (lengthSearch > 0 && !variableLength) throw new InvalidArgumentError("spec.infill.length_search", "applies to variable-length infilling only (variable_length is false)");
  const out: NormalizedInfillParams = { initialLength, maxLength, variableLength, lengthSearch };
  for (const [key, field] of [["eosCut", "eos_cut"], ["expandCut", "expand_cut"]] as const) {
    const v = p?.[key];
    if (v === undefined || v === null) continue;
    if (!variableLength) throw new InvalidArgumentError(`spec.infill.${field}`, "applies to variable-length infilling only (variable_length is false)");
    out[key] = check.range(`spec.infill.${field}`, v, 0, 1);
  }
  return out;
}
