import type { Family, Instance, Template } from "../family.js";
import { product, sampleDistinct } from "../family.js";
import { CONST_RANGE, constantCount, FACTOR_RANGE } from "../int-ops.js";
import type { PyValue } from "../python-values.js";
import { pyMod } from "../python-values.js";

/**
 * Sums over a range: "returns the sum of i times 3 for each i from 1 to n where i is even"
 * -> `sum([i * 3 for i in range(1, n + 1) if i % 2 == 0])`.
 */
interface Term {
  constant: readonly [number, number] | null;
  noun(c: number): string;
  code(c: number): string;
  apply(i: number, c: number): number;
}
interface Span {
  constant: readonly [number, number] | null;
  phrase(c: number): string;
  code(c: number): string;
  values(n: number, c: number): number[];
}
interface Where {
  constant: readonly [number, number] | null;
  phrase(c: number): string;
  code(c: number): string;
  keep(i: number, c: number): boolean;
}

const START_RANGE = [2, 9] as const;
const TERMS: Record<string, Term> = {
  i: { constant: null, noun: () => "i", code: () => "i", apply: (i) => i },
  add: { constant: CONST_RANGE, noun: (c) => `i plus ${c}`, code: (c) => `i + ${c}`, apply: (i, c) => i + c },
  mul: { constant: FACTOR_RANGE, noun: (c) => `i times ${c}`, code: (c) => `i * ${c}`, apply: (i, c) => i * c },
  square: { constant: null, noun: () => "i squared", code: () => "i * i", apply: (i) => i * i },
  const: { constant: CONST_RANGE, noun: (c) => `${c}`, code: (c) => `${c}`, apply: (_i, c) => c },
};
const range = (lo: number, hi: number): number[] => {
  const out: number[] = [];
  for (let i = lo; i < hi; i++) out.push(i);
  return out;
};
const SPANS: Record<string, Span> = {
  below: { constant: null, phrase: () => "from 0 to n minus 1", code: () => "range(n)", values: (n) => range(0, n) },
  upto: { constant: null, phrase: () => "from 1 to n", code: () => "range(1, n + 1)", values: (n) => range(1, n + 1) },
  from: { constant: START_RANGE, phrase: (c) => `from ${c} to n`, code: (c) => `range(${c}, n + 1)`, values: (n, c) => range(c, n + 1) },
};
const WHERES: Record<string, Where | null> = {
  all: null,
  even: { constant: null, phrase: () => " where i is even", code: () => " if i % 2 == 0", keep: (i) => pyMod(i, 2) === 0 },
  odd: { constant: null, phrase: () => " where i is odd", code: () => " if i % 2 == 1", keep: (i) => pyMod(i, 2) === 1 },
  divisible: {
    constant: FACTOR_RANGE,
    phrase: (c) => ` where i is divisible by ${c}`,
    code: (c) => ` if i % ${c} == 0`,
    keep: (i, c) => pyMod(i, c) === 0,
  },
};
const N_RANGE = [0, 25] as const;
const part = (kind: string): string => kind.slice(kind.indexOf("-") + 1);
const constOf = (spec: { constant: readonly [number, number] | null } | null): readonly [number, number] | null => spec?.constant ?? null;

const templates: Template[] = product([
  Object.keys(TERMS).map((k) => `term-${k}`),
  Object.keys(SPANS).map((k) => `span-${k}`),
  Object.keys(WHERES).map((k) => `where-${k}`),
]).map((kinds) => {
  const [t, s, w] = kinds.map(part) as [string, string, string];
  return {
    family: "loops",
    id: `loops/${kinds.join(".")}`,
    kinds,
    combos: constantCount(constOf(TERMS[t] ?? null)) * constantCount(constOf(SPANS[s] ?? null)) * constantCount(constOf(WHERES[w] ?? null)),
  };
});

export const loopsFamily: Family = {
  name: "loops",
  templates,
  instantiate(template, rng): Instance {
    const [tk, sk, wk] = template.kinds.map(part) as [string, string, string];
    const term = TERMS[tk] as Term;
    const span = SPANS[sk] as Span;
    const where = WHERES[wk] ?? null;
    const draw = (c: readonly [number, number] | null): number => (c ? rng.int(c[0], c[1]) : 0);
    const [tc, sc, wc] = [draw(term.constant), draw(span.constant), draw(constOf(where))];
    const evaluate = (input: PyValue): PyValue | undefined =>
      typeof input === "number"
        ? span
            .values(input, sc)
            .filter((i) => !where || where.keep(i, wc))
            .reduce((acc, i) => acc + term.apply(i, tc), 0)
        : undefined;
    return {
      template,
      key: `${template.id}|${tc},${sc},${wc}`,
      variable: "n",
      inputType: "int",
      expr: `sum([${term.code(tc)} for i in ${span.code(sc)}${where ? where.code(wc) : ""}])`,
      clause: (ending) => `${ending} the sum of ${term.noun(tc)} for each i ${span.phrase(sc)}${where ? where.phrase(wc) : ""}`,
      evaluate,
      sampleInputs: (r, count) =>
        sampleDistinct(
          r,
          count,
          (g) => g.int(N_RANGE[0], N_RANGE[1]),
          () => true,
          (vs) => new Set(vs.map((v) => JSON.stringify(evaluate(v)))).size >= 3,
        ),
    };
  },
};
