import type { Expr, Family, Instance, Template } from "../family.js";
import { PREC, product, sampleDistinct, wrap } from "../family.js";
import { CONST_RANGE, constantCount, FACTOR_RANGE, intOp } from "../int-ops.js";
import type { PyValue } from "../python-values.js";
import { pyMod } from "../python-values.js";

/** One-line conditional expressions: "returns x plus 3 if x is greater than 5, and x times 2 otherwise". */
interface Condition {
  constant: readonly [number, number] | null;
  phrase(c: number): string;
  code(c: number): string;
  test(v: number, c: number): boolean;
}

const CONDITIONS: Record<string, Condition> = {
  gt: { constant: CONST_RANGE, phrase: (c) => `x is greater than ${c}`, code: (c) => `x > ${c}`, test: (v, c) => v > c },
  lt: { constant: CONST_RANGE, phrase: (c) => `x is less than ${c}`, code: (c) => `x < ${c}`, test: (v, c) => v < c },
  eq: { constant: CONST_RANGE, phrase: (c) => `x is equal to ${c}`, code: (c) => `x == ${c}`, test: (v, c) => v === c },
  even: { constant: null, phrase: () => "x is even", code: () => "x % 2 == 0", test: (v) => pyMod(v, 2) === 0 },
  odd: { constant: null, phrase: () => "x is odd", code: () => "x % 2 == 1", test: (v) => pyMod(v, 2) === 1 },
  divisible: {
    constant: FACTOR_RANGE,
    phrase: (c) => `x is divisible by ${c}`,
    code: (c) => `x % ${c} == 0`,
    test: (v, c) => pyMod(v, c) === 0,
  },
};

/** What a branch returns: an operation on x, x itself, or a constant. */
interface Branch {
  constant: readonly [number, number] | null;
  noun(c: number): string;
  code(c: number): Expr;
  apply(v: number, c: number): number;
}

const X: Expr = { code: "x", prec: PREC.atom };
const opBranch = (kind: string): Branch => {
  const op = intOp(kind);
  return { constant: op.constant, noun: (c) => op.noun("x", c), code: (c) => op.code(X, c), apply: (v, c) => op.apply(v, c) };
};
const BRANCHES: Record<string, Branch> = {
  add: opBranch("add"),
  sub: opBranch("sub"),
  mul: opBranch("mul"),
  same: { constant: null, noun: () => "x", code: () => X, apply: (v) => v },
  const: { constant: CONST_RANGE, noun: (c) => `${c}`, code: (c) => ({ code: `${c}`, prec: PREC.atom }), apply: (_v, c) => c },
};

const INPUT_RANGE = [-9, 30] as const;
const MIN_PER_BRANCH = 2;

const condKinds = Object.keys(CONDITIONS).map((k) => `if-${k}`);
const thenKinds = Object.keys(BRANCHES).map((k) => `then-${k}`);
const elseKinds = Object.keys(BRANCHES).map((k) => `else-${k}`);
const part = (kind: string): string => kind.slice(kind.indexOf("-") + 1);
const cond = (kind: string): Condition => CONDITIONS[part(kind)] as Condition;
const branch = (kind: string): Branch => BRANCHES[part(kind)] as Branch;

const templates: Template[] = product([condKinds, thenKinds, elseKinds])
  // Equal branch kinds would need distinct constants to mean anything; "x if .. else x" is x.
  .filter(([, t, e]) => part(t ?? "") !== part(e ?? ""))
  .map((kinds) => {
    const [c, t, e] = kinds as [string, string, string];
    return {
      family: "conditionals",
      id: `conditionals/${kinds.join(".")}`,
      kinds,
      combos: constantCount(cond(c).constant) * constantCount(branch(t).constant) * constantCount(branch(e).constant),
    };
  });

const draw = (range: readonly [number, number] | null, rng: { int(a: number, b: number): number }): number =>
  range ? rng.int(range[0], range[1]) : 0;

export const conditionalsFamily: Family = {
  name: "conditionals",
  templates,
  instantiate(template, rng): Instance {
    const [ck, tk, ek] = template.kinds as [string, string, string];
    const cnd = cond(ck);
    const thn = branch(tk);
    const els = branch(ek);
    const [cc, tc, ec] = [draw(cnd.constant, rng), draw(thn.constant, rng), draw(els.constant, rng)];
    const expr = `${wrap(thn.code(tc), PREC.compare)} if ${cnd.code(cc)} else ${wrap(els.code(ec), PREC.compare)}`;
    const evaluate = (input: PyValue): PyValue | undefined =>
      typeof input === "number" ? (cnd.test(input, cc) ? thn.apply(input, tc) : els.apply(input, ec)) : undefined;
    return {
      template,
      key: `${template.id}|${cc},${tc},${ec}`,
      variable: "x",
      inputType: "int",
      expr,
      clause: (ending) => `${ending} ${thn.noun(tc)} if ${cnd.phrase(cc)}, and ${els.noun(ec)} otherwise`,
      evaluate,
      sampleInputs: (r, count) =>
        sampleDistinct(
          r,
          count,
          // Half the draws sit next to the condition's constant, where mistakes show.
          (g) => (g.next() < 0.5 && cnd.constant ? cc + g.int(-1, 1) * g.int(0, 2) : g.int(INPUT_RANGE[0], INPUT_RANGE[1])),
          () => true,
          (vs) => {
            const taken = vs.filter((v) => cnd.test(v as number, cc)).length;
            // Distinct inputs can meet "x is equal to c" only once.
            const minTaken = part(ck) === "eq" ? 1 : MIN_PER_BRANCH;
            return taken >= minTaken && vs.length - taken >= MIN_PER_BRANCH;
          },
        ),
    };
  },
};
