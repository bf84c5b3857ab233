import type { Expr } from "./family.js";
import { PREC, wrap } from "./family.js";
import { pyFloorDiv, pyMod } from "./python-values.js";

/**
 * Integer operations shared by the arithmetic, conditional and loop families: how each is
 * said in English, written in Python, and computed.
 */
export interface IntOp {
  kind: string;
  /** Inclusive range of its constant, or null when it takes none. */
  constant: readonly [number, number] | null;
  /** Verb phrase: "adds 3 to x". */
  step(ref: string, c: number): string;
  /** Noun phrase: "x plus 3". */
  noun(ref: string, c: number): string;
  code(inner: Expr, c: number): Expr;
  apply(v: number, c: number): number;
}

/** Constants are small so every digit is one token; 1..19 as the learnability runs used. */
export const CONST_RANGE = [1, 19] as const;
export const FACTOR_RANGE = [2, 9] as const;

const binary = (op: string, prec: number, e: Expr, c: number): Expr => ({
  code: `${wrap(e, prec)} ${op} ${c}`,
  prec,
});

export const INT_OPS: Record<string, IntOp> = {
  add: {
    kind: "add",
    constant: CONST_RANGE,
    step: (r, c) => `adds ${c} to ${r}`,
    noun: (r, c) => `${r} plus ${c}`,
    code: (e, c) => binary("+", PREC.additive, e, c),
    apply: (v, c) => v + c,
  },
  sub: {
    kind: "sub",
    constant: CONST_RANGE,
    step: (r, c) => `subtracts ${c} from ${r}`,
    noun: (r, c) => `${r} minus ${c}`,
    code: (e, c) => binary("-", PREC.additive, e, c),
    apply: (v, c) => v - c,
  },
  mul: {
    kind: "mul",
    constant: FACTOR_RANGE,
    step: (r, c) => `multiplies ${r} by ${c}`,
    noun: (r, c) => `${r} times ${c}`,
    code: (e, c) => binary("*", PREC.multiplicative, e, c),
    apply: (v, c) => v * c,
  },
  div: {
    kind: "div",
    constant: FACTOR_RANGE,
    step: (r, c) => `divides ${r} by ${c} rounding down`,
    noun: (r, c) => `${r} divided by ${c} rounding down`,
    code: (e, c) => binary("//", PREC.multiplicative, e, c),
    apply: (v, c) => pyFloorDiv(v, c),
  },
  mod: {
    kind: "mod",
    constant: FACTOR_RANGE,
    step: (r, c) => `takes the remainder of ${r} divided by ${c}`,
    noun: (r, c) => `the remainder of ${r} divided by ${c}`,
    code: (e, c) => binary("%", PREC.multiplicative, e, c),
    apply: (v, c) => pyMod(v, c),
  },
  square: {
    kind: "square",
    constant: null,
    step: (r) => `squares ${r}`,
    noun: (r) => `${r} squared`,
    // `**` is right-associative and binds tighter than unary minus: parenthesise any non-atom.
    code: (e) => ({ code: `${wrap(e, PREC.atom)} ** 2`, prec: PREC.power }),
    apply: (v) => v * v,
  },
};

export function intOp(kind: string): IntOp {
  const op = INT_OPS[kind];
  if (!op) throw new Error(`unknown integer operation: ${kind}`);
  return op;
}

export function constantCount(range: readonly [number, number] | null): number {
  return range ? range[1] - range[0] + 1 : 1;
}
