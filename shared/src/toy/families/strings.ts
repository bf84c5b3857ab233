import type { Expr, Family, Instance, Template } from "../family.js";
import { PREC, sampleDistinct, sequences, wrap } from "../family.js";
import { constantCount } from "../int-ops.js";
import type { PyValue } from "../python-values.js";

/** Chained string transformations on s: "reverses s, then takes the first 3 characters of the result". */
interface StrOp {
  constant: readonly [number, number] | null;
  step(ref: string, c: number): string;
  code(inner: Expr, c: number): Expr;
  apply(s: string, c: number): string;
}

const SLICE_RANGE = [1, 9] as const;
const REPEAT_RANGE = [2, 5] as const;
const postfix = (e: Expr, suffix: string): Expr => ({ code: `${wrap(e, PREC.atom)}${suffix}`, prec: PREC.atom });

const STR_OPS: Record<string, StrOp> = {
  reverse: { constant: null, step: (r) => `reverses ${r}`, code: (e) => postfix(e, "[::-1]"), apply: (s) => [...s].reverse().join("") },
  upper: { constant: null, step: (r) => `converts ${r} to upper case`, code: (e) => postfix(e, ".upper()"), apply: (s) => s.toUpperCase() },
  lower: { constant: null, step: (r) => `converts ${r} to lower case`, code: (e) => postfix(e, ".lower()"), apply: (s) => s.toLowerCase() },
  first: {
    constant: SLICE_RANGE,
    step: (r, c) => `takes the first ${c} characters of ${r}`,
    code: (e, c) => postfix(e, `[:${c}]`),
    apply: (s, c) => s.slice(0, c),
  },
  last: {
    constant: SLICE_RANGE,
    step: (r, c) => `takes the last ${c} characters of ${r}`,
    code: (e, c) => postfix(e, `[-${c}:]`),
    apply: (s, c) => s.slice(-c),
  },
  drop: {
    constant: SLICE_RANGE,
    step: (r, c) => `removes the first ${c} characters of ${r}`,
    code: (e, c) => postfix(e, `[${c}:]`),
    apply: (s, c) => s.slice(c),
  },
  repeat: {
    constant: REPEAT_RANGE,
    step: (r, c) => `repeats ${r} ${c} times`,
    code: (e, c) => ({ code: `${wrap(e, PREC.multiplicative)} * ${c}`, prec: PREC.multiplicative }),
    apply: (s, c) => s.repeat(c),
  },
};

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const MAX_INPUT_LENGTH = 10;
const strOp = (k: string): StrOp => STR_OPS[k] as StrOp;

const templates: Template[] = sequences(Object.keys(STR_OPS), [2], (k) => k[0] !== k[1]).map((kinds) => ({
  family: "strings",
  id: `strings/${kinds.join(".")}`,
  kinds,
  combos: kinds.reduce((n, k) => n * constantCount(strOp(k).constant), 1),
}));

export const stringsFamily: Family = {
  name: "strings",
  templates,
  instantiate(template, rng): Instance {
    const ops = template.kinds.map(strOp);
    const consts = ops.map((op) => (op.constant ? rng.int(op.constant[0], op.constant[1]) : 0));
    let expr: Expr = { code: "s", prec: PREC.atom };
    ops.forEach((op, i) => {
      expr = op.code(expr, consts[i] ?? 0);
    });
    const evaluate = (input: PyValue): PyValue | undefined =>
      typeof input === "string" ? ops.reduce((s, op, i) => op.apply(s, consts[i] ?? 0), input) : undefined;
    return {
      template,
      key: `${template.id}|${consts.join(",")}`,
      variable: "s",
      inputType: "str",
      expr: expr.code,
      clause: (ending) =>
        `${ops.map((op, i) => op.step(i === 0 ? "s" : "the result", consts[i] ?? 0)).join(", then ")}, and ${ending} the result`,
      evaluate,
      sampleInputs: (r, count) =>
        sampleDistinct(
          r,
          count,
          (g) => {
            const n = g.int(1, MAX_INPUT_LENGTH);
            let s = "";
            for (let i = 0; i < n; i++) s += LETTERS[g.int(0, LETTERS.length - 1)];
            return s;
          },
          () => true,
          (vs) => new Set(vs.map((v) => JSON.stringify(evaluate(v)))).size >= 3,
        ),
    };
  },
};
