import type { Rng } from "./prng.js";
import type { PyValue } from "./python-values.js";

/** The type of a task's single input, which fixes how a program form reads stdin. */
export type InputType = "int" | "str" | "intlist";

/**
 * A template is a sequence of operation kinds (e.g. ["add", "mul"]); its instances differ in
 * constants. Held-out (compositional) templates are those containing an adjacent pair of
 * kinds that no training template contains.
 */
export interface Template {
  family: string;
  /** Stable name, e.g. "arithmetic/add.mul". */
  id: string;
  kinds: readonly string[];
  /** Number of distinct constant combinations (how many instances can differ). */
  combos: number;
}

/** One concrete task before it is rendered as a function or a program. */
export interface Instance {
  template: Template;
  /** Template id plus constants: equal keys mean the same task. */
  key: string;
  variable: string;
  inputType: InputType;
  /** English clause after "that": e.g. "adds 3 to x, then ..., and returns the result". */
  clause(ending: "returns" | "prints"): string;
  /** Python expression over `variable` computing the answer. */
  expr: string;
  /** The answer in Python semantics, or undefined when the input is not valid for the task. */
  evaluate(input: PyValue): PyValue | undefined;
  /** `count` distinct valid inputs that exercise the task (both branches, empty results...). */
  sampleInputs(rng: Rng, count: number): PyValue[];
}

export interface Family {
  name: string;
  templates: readonly Template[];
  instantiate(template: Template, rng: Rng): Instance;
}

/** Python-like expression text plus its precedence, so composition adds only needed parens. */
export interface Expr {
  code: string;
  prec: number;
}

/** Operator precedence levels (higher binds tighter), as in Python's grammar. */
export const PREC = {
  conditional: 1,
  compare: 2,
  additive: 3,
  multiplicative: 4,
  power: 6,
  atom: 9,
} as const;

/** Parenthesises `e` when it binds looser than `min`. */
export function wrap(e: Expr, min: number): string {
  return e.prec < min ? `(${e.code})` : e.code;
}

/** Draws distinct valid inputs: `draw` proposes one, `valid` must hold, `accept` judges the set. */
export function sampleDistinct(
  rng: Rng,
  count: number,
  draw: (rng: Rng) => PyValue,
  valid: (input: PyValue) => boolean,
  accept: (inputs: PyValue[]) => boolean = () => true,
): PyValue[] {
  const MAX_SET_TRIES = 200;
  const MAX_DRAWS = 2000;
  for (let attempt = 0; attempt < MAX_SET_TRIES; attempt++) {
    const seen = new Set<string>();
    const out: PyValue[] = [];
    for (let d = 0; d < MAX_DRAWS && out.length < count; d++) {
      const v = draw(rng);
      const k = JSON.stringify(v);
      if (seen.has(k) || !valid(v)) continue;
      seen.add(k);
      out.push(v);
    }
    if (out.length === count && accept(out)) return out;
  }
  throw new Error(`could not draw ${count} valid distinct inputs`);
}

/** All sequences over `choices` of the given lengths, optionally filtered. */
export function sequences(
  choices: readonly string[],
  lengths: readonly number[],
  keep: (kinds: string[]) => boolean = () => true,
): string[][] {
  const out: string[][] = [];
  const grow = (prefix: string[], len: number): void => {
    if (prefix.length === len) {
      if (keep(prefix)) out.push(prefix);
      return;
    }
    for (const c of choices) grow([...prefix, c], len);
  };
  for (const len of lengths) grow([], len);
  return out;
}

/** Cartesian product of per-position choices. */
export function product(positions: readonly (readonly string[])[]): string[][] {
  let out: string[][] = [[]];
  for (const choices of positions) out = out.flatMap((p) => choices.map((c) => [...p, c]));
  return out;
}
