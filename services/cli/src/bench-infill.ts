/**
 * `rlmesh bench infill`: infilling pass@1 on held-out infilling rows (a reference solution with a
 * middle of whole lines removed, shared/src/infill, from the held-out split only), the whole
 * program prefix + middle + suffix tested through the real sandbox (executor runEval: BullMQ →
 * executor → Docker), for DreamOn's comparison: fixed lengths (oracle = the true middle's token
 * count, ½ and 2× of it) and variable length (expand/delete from 4 and from 32 masks, at most 64).
 * Variable modes need a model whose manifest declares expand_id; on others they are skipped.
 */
import { join, resolve } from "node:path";
import { createLogger } from "@rlmesh/shared";
import type { CanonicalRow } from "@rlmesh/shared/datasets/index";
import { infillProgram, loadInfillRows, type InfillRow } from "@rlmesh/shared/infill/index";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { loadRolloutModel, OrtRolloutEngine } from "@rlmesh/rollout/runtime/ort-rollout-engine";
import { infillTokensOf, supportsVariableLength, type InfillRequestItem } from "@rlmesh/rollout/runtime/infill-requests";
import type { CacheMode } from "@rlmesh/rollout/decoding/decode-params";
import { DEFAULT_INFILL_CACHE, MAX_LENGTH_SEARCH, resolveInfillParams, SYNTAX_CHECKS, type SyntaxCheck } from "@rlmesh/rollout/decoding/infill-params";
import { flagBool, flagFloat, flagInt, flagString, parseArgs, UsageError } from "./args.js";

export const BENCH_INFILL_USAGE =
  "rlmesh bench infill [--model DIR] [--dataset FILE] [--split heldout|train] [--limit N] [--modes a,b,...] [--seed S] [--replicas N] [--threshold T] [--variable-threshold T] [--eos-cut P] [--expand-cut P] [--length-search W] [--syntax-check python|none] [--cache none|prefix|dual] [--block-length N] [--no-suffix-eos] [--json]";

export type InfillMode = "oracle" | "fixed_short" | "fixed_long" | "variable_from_4" | "variable_from_32" | "variable_from_oracle";
/** The modes the bench runs by default (DreamOn's comparison). */
export const INFILL_MODES: readonly InfillMode[] = ["oracle", "fixed_short", "fixed_long", "variable_from_4", "variable_from_32"];
/**
 * A diagnostic mode, only on request (--modes): variable length starting from the true length.
 * A model that knows the length leaves the canvas as it is (no expand, no delete), so this reads
 * like oracle; where it falls below oracle, the expand/delete predictions are what fails.
 */
export const DIAGNOSTIC_MODES: readonly InfillMode[] = ["variable_from_oracle"];
/** DreamOn's evaluation: the variable-length middle grows to at most 64 tokens. */
export const VARIABLE_MAX_LENGTH = 64;

export interface ModeResult {
  /** Rows scored (a sample the sandbox could not score is left out, never counted as a fail). */
  n: number;
  passed: number;
  pass_at_1: number;
  /** Mean |generated middle tokens − true middle tokens|. */
  mean_length_error: number;
  mean_length: number;
  /** Generated middle equals the true middle exactly. */
  exact_match: number;
  /** Forward passes per generated middle token (all rows together). */
  nfe_per_token: number;
  decode_seconds: number;
  /** Variable modes with a length search: the mean |length error| of the expand/delete decode before the search. */
  mean_length_error_before_search?: number;
}

/** The masks a mode starts with for a middle of `trueLength` tokens, and whether it may expand/delete. */
export function modeLengths(mode: InfillMode, trueLength: number): { variable: boolean; initialLength: number; maxLength: number } {
  switch (mode) {
    case "oracle":
      return { variable: false, initialLength: trueLength, maxLength: trueLength };
    case "fixed_short": {
      const n = Math.max(1, Math.round(trueLength / 2));
      return { variable: false, initialLength: n, maxLength: n };
    }
    case "fixed_long":
      return { variable: false, initialLength: 2 * trueLength, maxLength: 2 * trueLength };
    case "variable_from_4":
      return { variable: true, initialLength: 4, maxLength: VARIABLE_MAX_LENGTH };
    case "variable_from_32":
      return { variable: true, initialLength: 32, maxLength: VARIABLE_MAX_LENGTH };
    case "variable_from_oracle":
      return { variable: true, initialLength: trueLength, maxLength: Math.max(trueLength, VARIABLE_MAX_LENGTH) };
  }
}

/**
 * The issue's target: the better variable mode within 2 points of oracle, and at least 30 %
 * relative above the worse fixed-length mode (fixed_short / fixed_long).
 */
export function infillTarget(modes: Partial<Record<InfillMode, ModeResult>>): {
  met: boolean | null;
  variable_best: number | null;
  oracle: number | null;
  worse_fixed: number | null;
  within_2_points_of_oracle: boolean | null;
  relative_gain_over_worse_fixed: number | null;
} {
  const v = [modes.variable_from_4, modes.variable_from_32].filter((m): m is ModeResult => m !== undefined);
  const fixed = [modes.fixed_short, modes.fixed_long].filter((m): m is ModeResult => m !== undefined);
  if (v.length === 0 || !modes.oracle || fixed.length === 0) {
    return { met: null, variable_best: null, oracle: modes.oracle?.pass_at_1 ?? null, worse_fixed: null, within_2_points_of_oracle: null, relative_gain_over_worse_fixed: null };
  }
  const best = Math.max(...v.map((m) => m.pass_at_1));
  const worse = Math.min(...fixed.map((m) => m.pass_at_1));
  const within = best >= modes.oracle.pass_at_1 - 0.02;
  const gain = worse > 0 ? best / worse - 1 : best > 0 ? Infinity : 0;
  return {
    met: within && gain >= 0.3,
    variable_best: best,
    oracle: modes.oracle.pass_at_1,
    worse_fixed: worse,
    within_2_points_of_oracle: within,
    relative_gain_over_worse_fixed: gain,
  };
}

export async function benchInfillCommand(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const a = parseArgs(argv, ["json", "no-suffix-eos"]);
  const json = flagBool(a, "json");
  const modelDir = resolve(flagString(a, "model") ?? join(REPO_ROOT, "models", "tiny-coder-infill"));
  // --split train: rows cut from the training split, for tuning decoding knobs without looking at the held-out rows.
  const split = flagString(a, "split") ?? "heldout";
  if (split !== "heldout" && split !== "train") throw new UsageError(`--split must be heldout or train, got ${split}`);
  const dataset = resolve(flagString(a, "dataset") ?? join(REPO_ROOT, "datasets", "toy", split === "train" ? "train.jsonl" : "test-instances.jsonl"));
  const limit = flagInt(a, "limit", 200, 1);
  const seed = flagInt(a, "seed", 1, 0);
  const replicas = flagInt(a, "replicas", 1, 1);
  // Fixed modes: Fast-dLLM's threshold rule (1 = one token per step, DreamOn's baseline); variable length is always one per step.
  const threshold = flagFloat(a, "threshold", 1);
  if (!(threshold > 0 && threshold <= 1)) throw new UsageError(`--threshold must be in (0, 1], got ${threshold}`);
  // Variable modes: 1 = DreamOn (one token per step); below 1, confident ordinary tokens commit together (one edit per step).
  const variableThreshold = flagFloat(a, "variable-threshold", 1);
  if (!(variableThreshold > 0 && variableThreshold <= 1)) throw new UsageError(`--variable-threshold must be in (0, 1], got ${variableThreshold}`);
  // Variable modes' length rules (InfillParams eos_cut / expand_cut): 0 = DreamOn's order; unset = the model's manifest defaults.
  const cutFlag = (name: string): number | undefined => {
    if (!a.flags.has(name)) return undefined;
    const v = flagFloat(a, name, 0);
    if (!(v >= 0 && v <= 1)) throw new UsageError(`--${name} must be in [0, 1] (0 = DreamOn's order), got ${v}`);
    return v;
  };
  // Variable modes' length search radius (InfillParams.length_search; unset = the model's manifest default) and its syntax screen.
  const lengthSearch = a.flags.has("length-search") ? flagInt(a, "length-search", 0, 0) : undefined;
  if (lengthSearch !== undefined && lengthSearch > MAX_LENGTH_SEARCH) throw new UsageError(`--length-search must be in [0, ${MAX_LENGTH_SEARCH}], got ${lengthSearch}`);
  const syntaxCheck = flagString(a, "syntax-check");
  if (syntaxCheck !== undefined && !SYNTAX_CHECKS.includes(syntaxCheck as SyntaxCheck)) throw new UsageError(`--syntax-check must be one of ${SYNTAX_CHECKS.join(", ")}, got ${syntaxCheck}`);
  const askedCuts = {
    eos_cut: cutFlag("eos-cut"),
    expand_cut: cutFlag("expand-cut"),
    ...(lengthSearch !== undefined ? { length_search: lengthSearch } : {}),
    ...(syntaxCheck !== undefined ? { syntax_check: syntaxCheck } : {}),
  };
  // Fixed modes only: Fast-dLLM's KV cache over the canvas and its blocks (variable length runs uncached).
  // Unset: the worker's default (dual, or full forwards on a model without a cache).
  const cache = flagString(a, "cache");
  if (cache !== undefined && !["none", "prefix", "dual"].includes(cache)) throw new UsageError(`--cache must be none, prefix or dual, got ${cache}`);
  const cacheSaid = cache ?? `${DEFAULT_INFILL_CACHE} by default`;
  const blockLength = a.flags.has("block-length") ? flagInt(a, "block-length", 0, 1) : undefined;
  const wanted = (flagString(a, "modes") ?? INFILL_MODES.join(",")).split(",").map((s) => s.trim()) as InfillMode[];
  const known = [...INFILL_MODES, ...DIAGNOSTIC_MODES];
  for (const m of wanted) if (!known.includes(m)) throw new UsageError(`--modes: unknown mode ${m}; one of ${known.join(", ")}`);
  const say = (l: string) => {
    if (!json) print(l);
  };

  const rows = loadInfillRows(dataset, split, { seed }).slice(0, limit);
  const model = await loadRolloutModel(modelDir);
  if (!model.codec) throw new Error(`${modelDir} has no tokenizer`);
  const encode = model.codec.encode.bind(model.codec);
  const variableOk = supportsVariableLength(model.manifest);
  const modes = wanted.filter((m) => variableOk || !modeLengths(m, 1).variable);
  const skipped = wanted.filter((m) => !modes.includes(m)).map((m) => ({ mode: m, reason: `${model.manifest.name} declares no expand_id (fixed length only)` }));
  const trueLengths = rows.map((r) => encode(r.middle).length);
  // The variable modes' length rules in effect, as the worker resolves them (the flags, else the model's manifest defaults, else 0).
  const cuts = variableOk
    ? resolveInfillParams({ variable: true, ...askedCuts }, infillTokensOf(model.manifest))
    : { eos_cut: 0, expand_cut: 0, length_search: 0, syntax_check: "none" };
  say(`bench infill: ${model.manifest.name} (${modelDir}), ${rows.length} ${split === "train" ? "training-split" : "held-out"} infilling rows of ${dataset}, greedy, fixed modes ${threshold >= 1 ? "one token per step" : `at threshold ${threshold}`} (cache ${cacheSaid}${blockLength ? `, blocks of ${blockLength}` : ""}), variable ${variableThreshold >= 1 ? "one token per step" : `at threshold ${variableThreshold}`}${cuts.eos_cut || cuts.expand_cut ? `, EOS cut ${cuts.eos_cut}, expand cut ${cuts.expand_cut}` : ", DreamOn's order"}${cuts.length_search ? `, length search ±${cuts.length_search} (syntax check ${cuts.syntax_check})` : ""}`);
  for (const s of skipped) say(`  ${s.mode}: skipped (${s.reason})`);

  const engine = await OrtRolloutEngine.create({ model, replicas, logger: createLogger("bench-infill", { level: "warn" }) });
  const programs = new Map<string, string>();
  const generated = new Map<InfillMode, { lengths: number[]; exact: number; nfe: number; seconds: number; searchedFrom: Array<number | undefined> }>();
  try {
    for (const mode of modes) {
      const t0 = performance.now();
      const byVariable = new Map<boolean, number[]>();
      rows.forEach((_, i) => {
        const v = modeLengths(mode, trueLengths[i]!).variable;
        byVariable.set(v, [...(byVariable.get(v) ?? []), i]);
      });
      const lengths = new Array<number>(rows.length).fill(0);
      const searchedFrom = new Array<number | undefined>(rows.length).fill(undefined);
      let exact = 0;
      let nfe = 0;
      for (const [variable, idx] of byVariable) {
        const items: InfillRequestItem[] = idx.map((i) => {
          const l = modeLengths(mode, trueLengths[i]!);
          return { itemId: String(i), prefix: rows[i]!.prefix, suffix: rows[i]!.suffix, initialLength: l.initialLength, maxLength: l.maxLength, seed: seed + i };
        });
        const res = await engine.infillSamples(items, {
          variable,
          params: {
            temperature: 0,
            threshold: variable ? variableThreshold : threshold,
            seed,
            ...(variable ? askedCuts : { ...(cache ? { cache: cache as CacheMode } : {}), ...(blockLength ? { block_length: blockLength } : {}) }),
          },
          ...(flagBool(a, "no-suffix-eos") ? { suffixEos: false } : {}),
        });
        for (const s of res.samples) {
          const i = Number(s.itemId);
          const row = rows[i]!;
          lengths[i] = s.middleTokenIds.length;
          searchedFrom[i] = s.lengthSearch?.variableLength;
          nfe += s.nfe;
          if (s.middleText === row.middle) exact++;
          programs.set(`${mode}|${row.task_id}`, infillProgram(row, s.middleText));
        }
      }
      const seconds = (performance.now() - t0) / 1000;
      generated.set(mode, { lengths, exact, nfe, seconds, searchedFrom });
      say(`  decoded ${mode}: ${seconds.toFixed(1)} s`);
    }
  } finally {
    await engine.close();
  }

  // One sandbox eval for every mode (one executor warm-up): task ids are mode|task_id.
  const evalRows: CanonicalRow[] = modes.flatMap((mode) => rows.map((r) => canonical(r, `${mode}|${r.task_id}`)));
  const { runEval } = await import("@rlmesh/executor/run-eval");
  const report = await runEval({ dataset: evalRows, responses: programs, logger: createLogger("bench-infill", { level: "warn" }) });
  for (const w of report.warnings) say(`  warning: ${w}`);
  const results: Partial<Record<InfillMode, ModeResult>> = {};
  for (const mode of modes) {
    const g = generated.get(mode)!;
    const scored = report.rows.filter((r) => r.task_id.startsWith(`${mode}|`) && !r.unscored);
    const passed = scored.filter((r) => r.result.reward === 1).length;
    const genTokens = g.lengths.reduce((x, y) => x + y, 0);
    results[mode] = {
      n: scored.length,
      passed,
      pass_at_1: scored.length ? passed / scored.length : 0,
      mean_length_error: mean(g.lengths.map((l, i) => Math.abs(l - trueLengths[i]!))),
      mean_length: mean(g.lengths),
      exact_match: rows.length ? g.exact / rows.length : 0,
      nfe_per_token: genTokens ? g.nfe / genTokens : 0,
      decode_seconds: g.seconds,
      ...(g.searchedFrom.some((l) => l !== undefined)
        ? { mean_length_error_before_search: mean(g.searchedFrom.map((l, i) => Math.abs((l ?? g.lengths[i]!) - trueLengths[i]!))) }
        : {}),
    };
  }
  const target = infillTarget(results);
  if (json) {
    print(
      JSON.stringify({
        model: model.manifest.name,
        model_dir: modelDir,
        dataset,
        split,
        rows: rows.length,
        mean_true_length: mean(trueLengths),
        decoding: {
          temperature: 0,
          fixed_threshold: threshold,
          fixed_cache: cacheSaid,
          ...(blockLength ? { fixed_block_length: blockLength } : {}),
          variable_threshold: variableThreshold,
          variable_eos_cut: cuts.eos_cut,
          variable_expand_cut: cuts.expand_cut,
          variable_length_search: cuts.length_search,
          variable_syntax_check: cuts.syntax_check,
          alg: "entropy",
          suffix_eos: !flagBool(a, "no-suffix-eos"),
        },
        modes: results,
        skipped,
        target,
        unscored_samples: report.summary.unscored_samples,
      }),
    );
    return 0;
  }
  say(`  mean true middle length ${mean(trueLengths).toFixed(1)} tokens; sandbox: ${report.summary.total} programs scored, ${report.summary.unscored_samples} unscored`);
  say("");
  say(`  ${"mode".padEnd(20)} ${"pass@1".padStart(7)} ${"|len err|".padStart(10)} ${"mean len".padStart(9)} ${"exact".padStart(6)} ${"NFE/token".padStart(10)}`);
  for (const mode of modes) {
    const r = results[mode]!;
    say(
      `  ${mode.padEnd(20)} ${pct(r.pass_at_1).padStart(7)} ${r.mean_length_error.toFixed(2).padStart(10)} ${r.mean_length.toFixed(1).padStart(9)} ${pct(r.exact_match).padStart(6)} ${r.nfe_per_token.toFixed(2).padStart(10)}`,
    );
  }
  if (target.met === null) say("\n  target (variable within 2 points of oracle, >= 30 % relative above the worse fixed mode): not measurable (needs oracle, a fixed and a variable mode)");
  else
    say(
      `\n  target: best variable ${pct(target.variable_best!)} vs oracle ${pct(target.oracle!)} (within 2 points: ${target.within_2_points_of_oracle ? "yes" : "no"}), ` +
        `vs worse fixed ${pct(target.worse_fixed!)} (${Number.isFinite(target.relative_gain_over_worse_fixed!) ? `${(100 * target.relative_gain_over_worse_fixed!).toFixed(0)} %` : "inf"} relative) -> ${target.met ? "MET" : "NOT met"}`,
    );
  return 0;
}

function canonical(r: InfillRow, taskId: string): CanonicalRow {
  return { task_id: taskId, prompt: r.prompt, tests: r.tests, source: r.source };
}

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}
