import type { Expr, Family, Instance, Template } from "../family.js";
import { PREC, sampleDistinct, sequences } from "../family.js";
import { constantCount, intOp, INT_OPS } from "../int-ops.js";
import type { PyValue } from "../python-values.js";

/** Chained integer operations on x: "adds 3 to x, then multiplies the result by 2". */
const KINDS = Object.keys(INT_OPS);
const CHAIN_LENGTHS = [2, 3];
const INPUT_RANGE = [-9, 30] as const;

const templates: Template[] = sequences(KINDS, CHAIN_LENGTHS, (k) =>
  // Squaring twice makes numbers large and adds nothing to learn.
  k.every((kind, i) => !(kind === "square" && k[i - 1] === "square")),
).map((kinds) => ({
  family: "arithmetic",
  id: `arithmetic/${kinds.join(".")}`,
  kinds,
  combos: kinds.reduce((n, k) => n * constantCount(intOp(k).constant), 1),
}));

export const arithmeticFamily: Family = {
  name: "arithmetic",
  templates,
  instantiate(template, rng): Instance {
    const ops = template.kinds.map(intOp);
    const consts = ops.map((op) => (op.constant ? rng.int(op.constant[0], op.constant[1]) : 0));
    let expr: Expr = { code: "x", prec: PREC.atom };
    ops.forEach((op, i) => {
      expr = op.code(expr, consts[i] ?? 0);
    });
    const evaluate = (input: PyValue): PyValue | undefined => {
      if (typeof input !== "number") return undefined;
      return ops.reduce((v, op, i) => op.apply(v, consts[i] ?? 0), input);
    };
    return {
      template,
      key: `${template.id}|${consts.join(",")}`,
      variable: "x",
      inputType: "int",
      expr: expr.code,
      clause: (ending) =>
        `${ops.map((op, i) => op.step(i === 0 ? "x" : "the result", consts[i] ?? 0)).join(", then ")}, and ${ending} the result`,
      evaluate,
      sampleInputs: (r, count) =>
        sampleDistinct(
          r,
          count,
          (g) => g.int(INPUT_RANGE[0], INPUT_RANGE[1]),
          (v) => evaluate(v) !== undefined,
          // Several distinct answers, so a constant function cannot pass.
          (vs) => new Set(vs.map((v) => JSON.stringify(evaluate(v)))).size >= 3,
        ),
    };
  },
};
