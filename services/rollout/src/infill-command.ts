/**
 * `rlmesh infill`: fill the middle between a prefix file and a suffix file with a local model
 * (onnxruntime, in-process; the same engine and decoder as RolloutService.Infill) and print the
 * whole program, prefix + middle + suffix.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createLogger } from "@rlmesh/shared";
import { InvalidDecodeParamsError } from "./decoding/decode-params.js";
import { loadRolloutModel, OrtRolloutEngine } from "./runtime/ort-rollout-engine.js";

export const INFILL_USAGE =
  "rlmesh infill --model DIR --prefix-file A --suffix-file B [--initial-length N] [--max-length M] [--fixed] [--eos-cut P] [--expand-cut P] [--length-search W] [--syntax-check python|none] [--temperature T] [--seed S] [--raw] [--json]";

export const INFILL_HELP = [
  "Variable length (DreamOn expand/delete) when the model's manifest declares expand_id, else fixed length;",
  "--fixed forces fixed length: exactly --initial-length masks (default 16). Variable length starts from",
  "--initial-length masks (default 4) and grows to at most --max-length (default 64). Greedy unless",
  "--temperature is given. --eos-cut / --expand-cut set variable length's length cuts (0 = DreamOn's order;",
  "default: the model's manifest infill_decoding). --length-search W (variable length; 0 = off, default: the manifest's)",
  "also decodes the middle at each fixed length within W of the length the expand/delete decode reached and keeps",
  "the candidate the model scores best among those whose program passes --syntax-check (python, the default, or none).",
  "--json prints {program, middle, length, nfe, variable, policy_version, length_search}.",
  "Files are read as whole lines: the prefix's final newline and the suffix's first line break go with",
  "the middle (the tiny coder's tokenizer glues a newline to the indentation after it, and the infilling",
  "rows put each middle line's break before it); --raw uses the files' bytes exactly.",
].join("\n");

/** Thrown for a bad command line (the CLI prints it with the usage). */
export class InfillUsageError extends Error {
  override name = "UsageError";
}

const OPTIONS = [
  "model",
  "prefix-file",
  "suffix-file",
  "initial-length",
  "max-length",
  "fixed",
  "eos-cut",
  "expand-cut",
  "length-search",
  "syntax-check",
  "temperature",
  "seed",
  "json",
  "raw",
];

function flags(argv: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new InfillUsageError(`unexpected argument ${a}`);
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (eq > 0) out.set(key, a.slice(eq + 1));
    else if (key === "fixed" || key === "json" || key === "raw") out.set(key, true);
    else {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) throw new InfillUsageError(`--${key} needs a value`);
      out.set(key, v);
      i++;
    }
  }
  for (const k of out.keys()) if (!OPTIONS.includes(k)) throw new InfillUsageError(`unknown option --${k}`);
  return out;
}

function num(f: Map<string, string | true>, key: string, integer: boolean): number | undefined {
  const v = f.get(key);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InfillUsageError(`--${key} must be ${integer ? "an integer" : "a number"}, got ${String(v)}`);
  return n;
}

export async function infillCommand(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const f = flags(argv);
  const need = (k: string): string => {
    const v = f.get(k);
    if (typeof v !== "string") throw new InfillUsageError(`--${k} is required`);
    return v;
  };
  const modelDir = resolve(need("model"));
  const prefixFile = readFileSync(need("prefix-file"), "utf8");
  const suffixFile = readFileSync(need("suffix-file"), "utf8");
  const { prefix, suffix, tail } = f.has("raw") ? { prefix: prefixFile, suffix: suffixFile, tail: "" } : asLines(prefixFile, suffixFile);
  const initialLength = num(f, "initial-length", true);
  const maxLength = num(f, "max-length", true);
  const temperature = num(f, "temperature", false) ?? 0;
  const seed = num(f, "seed", true) ?? 1;
  const eosCut = num(f, "eos-cut", false);
  const expandCut = num(f, "expand-cut", false);
  const lengthSearch = num(f, "length-search", true);
  const syntaxCheck = f.get("syntax-check");
  if (syntaxCheck === true) throw new InfillUsageError("--syntax-check needs a value");
  const engine = await OrtRolloutEngine.create({
    model: await loadRolloutModel(modelDir),
    replicas: 1,
    logger: createLogger("infill", { level: "warn" }),
  });
  try {
    const res = await engine.infillSamples(
      [{ itemId: "0", prefix, suffix, ...(initialLength !== undefined ? { initialLength } : {}), ...(maxLength !== undefined ? { maxLength } : {}) }],
      {
        ...(f.has("fixed") ? { variable: false } : {}),
        params: {
          temperature,
          seed,
          threshold: 1,
          ...(eosCut !== undefined ? { eos_cut: eosCut } : {}),
          ...(expandCut !== undefined ? { expand_cut: expandCut } : {}),
          ...(lengthSearch !== undefined ? { length_search: lengthSearch } : {}),
          ...(syntaxCheck !== undefined ? { syntax_check: syntaxCheck } : {}),
        },
      },
    );
    const s = res.samples[0]!;
    const program = prefix + s.middleText + suffix + tail;
    if (f.has("json")) {
      print(
        JSON.stringify({
          program,
          middle: s.middleText,
          length: s.middleTokenIds.length,
          nfe: s.nfe,
          variable: res.variable,
          policy_version: s.policyVersion,
          ...(s.lengthSearch
            ? { length_search: { candidates: s.lengthSearch.candidates, screened_out: s.lengthSearch.screenedOut, variable_length: s.lengthSearch.variableLength } }
            : {}),
        }),
      );
    } else print(program);
    return 0;
  } catch (err) {
    // A bad value: name the option that set it (`items[0].max_length` -> --max-length), else the field.
    if (err instanceof InvalidDecodeParamsError) {
      const name = err.field.split(".").at(-1)!.replace(/_/g, "-");
      throw new InfillUsageError(`${OPTIONS.includes(name) ? `--${name}` : err.field}: ${err.message}`);
    }
    throw err;
  } finally {
    await engine.close();
  }
}

/**
 * Whole-line files in the infilling rows' layout (shared/src/infill): the prefix without its final
 * newline, the suffix starting with a line break and without its final newline (given back as `tail`).
 */
export function asLines(prefixFile: string, suffixFile: string): { prefix: string; suffix: string; tail: string } {
  const prefix = prefixFile.replace(/\r?\n$/, "");
  const tail = /\n$/.test(suffixFile) ? "\n" : "";
  const body = suffixFile.replace(/\r?\n$/, "");
  const suffix = body === "" || body.startsWith("\n") ? body : `\n${body}`;
  return { prefix, suffix, tail };
}
