import type { Family, Instance, Template } from "../family.js";
import { product, sampleDistinct } from "../family.js";
import { CONST_RANGE, constantCount, FACTOR_RANGE } from "../int-ops.js";
import type { PyValue } from "../python-values.js";
import { pyMod } from "../python-values.js";

/**
 * Filter, map, then reduce a list of integers: one list comprehension, e.g.
 * "keeps the numbers in xs greater than 3, then multiplies each number in the result by 2,
 * and returns the sum of the result" -> `sum([v * 2 for v in xs if v > 3])`.
 */
interface Filter {
  constant: readonly [number, number] | null;
  step(ref: string, c: number): string;
  code(c: number): string;
  keep(v: number, c: number): boolean;
}
interface MapOp {
  constant: readonly [number, number] | null;
  step(ref: string, c: number): string;
  code(c: number): string;
  apply(v: number, c: number): number;
}
interface Reducer {
  noun(ref: string): string;
  code(list: string): string;
  apply(xs: number[]): PyValue | undefined;
}

const FILTERS: Record<string, Filter | null> = {
  all: null,
  gt: {
    constant: CONST_RANGE,
    step: (r, c) => `keeps the numbers in ${r} greater than ${c}`,
    code: (c) => `v > ${c}`,
    keep: (v, c) => v > c,
  },
  lt: { constant: CONST_RANGE, step: (r, c) => `keeps the numbers in ${r} less than ${c}`, code: (c) => `v < ${c}`, keep: (v, c) => v < c },
  even: { constant: null, step: (r) => `keeps the even numbers in ${r}`, code: () => "v % 2 == 0", keep: (v) => pyMod(v, 2) === 0 },
  odd: { constant: null, step: (r) => `keeps the odd numbers in ${r}`, code: () => "v % 2 == 1", keep: (v) => pyMod(v, 2) === 1 },
};
const MAPS: Record<string, MapOp | null> = {
  same: null,
  add: { constant: CONST_RANGE, step: (r, c) => `adds ${c} to each number in ${r}`, code: (c) => `v + ${c}`, apply: (v, c) => v + c },
  mul: {
    constant: FACTOR_RANGE,
    step: (r, c) => `multiplies each number in ${r} by ${c}`,
    code: (c) => `v * ${c}`,
    apply: (v, c) => v * c,
  },
};
const REDUCERS: Record<string, Reducer> = {
  sum: { noun: (r) => `the sum of ${r}`, code: (l) => `sum(${l})`, apply: (xs) => xs.reduce((a, b) => a + b, 0) },
  max: { noun: (r) => `the largest number in ${r}`, code: (l) => `max(${l})`, apply: (xs) => (xs.length ? Math.max(...xs) : undefined) },
  min: { noun: (r) => `the smallest number in ${r}`, code: (l) => `min(${l})`, apply: (xs) => (xs.length ? Math.min(...xs) : undefined) },
  len: { noun: (r) => `the length of ${r}`, code: (l) => `len(${l})`, apply: (xs) => xs.length },
  list: { noun: (r) => r, code: (l) => l, apply: (xs) => xs },
  sorted: { noun: (r) => `${r} sorted`, code: (l) => `sorted(${l})`, apply: (xs) => xs.slice().sort((a, b) => a - b) },
};

const part = (kind: string): string => kind.slice(kind.indexOf("-") + 1);
const INPUT_RANGE = [-5, 25] as const;
const LENGTH_RANGE = [0, 8] as const;

const templates: Template[] = product([
  Object.keys(FILTERS).map((k) => `filter-${k}`),
  Object.keys(MAPS).map((k) => `map-${k}`),
  Object.keys(REDUCERS).map((k) => `reduce-${k}`),
])
  .filter(([f, m, r]) => {
    const [fk, mk, rk] = [part(f ?? ""), part(m ?? ""), part(r ?? "")];
    if (fk === "all" && mk === "same" && rk === "list") return false; // identity
    if (mk !== "same" && rk === "len") return false; // mapping cannot change a length
    return true;
  })
  .map((kinds) => {
    const [f, m] = kinds as [string, string, string];
    return {
      family: "lists",
      id: `lists/${kinds.join(".")}`,
      kinds,
      combos: constantCount(FILTERS[part(f)]?.constant ?? null) * constantCount(MAPS[part(m)]?.constant ?? null),
    };
  });

export const listsFamily: Family = {
  name: "lists",
  templates,
  instantiate(template, rng): Instance {
    const [fk, mk, rk] = template.kinds.map(part) as [string, string, string];
    const filter = FILTERS[fk] ?? null;
    const map = MAPS[mk] ?? null;
    const reducer = REDUCERS[rk] as Reducer;
    const fc = filter?.constant ? rng.int(filter.constant[0], filter.constant[1]) : 0;
    const mc = map?.constant ? rng.int(map.constant[0], map.constant[1]) : 0;
    const list = filter || map ? `[${map ? map.code(mc) : "v"} for v in xs${filter ? ` if ${filter.code(fc)}` : ""}]` : "xs";
    const steps: string[] = [];
    if (filter) steps.push(filter.step("xs", fc));
    if (map) steps.push(map.step(steps.length ? "the result" : "xs", mc));
    const evaluate = (input: PyValue): PyValue | undefined => {
      if (!Array.isArray(input)) return undefined;
      const xs = (input as number[]).filter((v) => !filter || filter.keep(v, fc)).map((v) => (map ? map.apply(v, mc) : v));
      return reducer.apply(xs);
    };
    return {
      template,
      key: `${template.id}|${fc},${mc}`,
      variable: "xs",
      inputType: "intlist",
      expr: reducer.code(list),
      clause: (ending) =>
        steps.length ? `${steps.join(", then ")}, and ${ending} ${reducer.noun("the result")}` : `${ending} ${reducer.noun("xs")}`,
      evaluate,
      sampleInputs: (r, count) =>
        sampleDistinct(
          r,
          count,
          (g) => {
            const n = g.int(LENGTH_RANGE[0], LENGTH_RANGE[1]);
            const xs: number[] = [];
            for (let i = 0; i < n; i++) xs.push(g.int(INPUT_RANGE[0], INPUT_RANGE[1]));
            return xs;
          },
          (v) => evaluate(v) !== undefined,
          (vs) => new Set(vs.map((v) => JSON.stringify(evaluate(v)))).size >= 3,
        ),
    };
  },
};
