import type { Family, Instance, Template } from "./family.js";
import { TOY_FAMILIES } from "./families/index.js";
import { holdOutTemplates } from "./holdout.js";
import type { Rng } from "./prng.js";
import { createRng } from "./prng.js";
import type { TaskForm } from "./render-row.js";
import { renderRow } from "./render-row.js";
import type { PyValue } from "./python-values.js";
import type { TaskRow, ToySplit } from "./task-row.js";

export interface ToySuiteOptions {
  /** Seed of every random choice; the same seed gives byte-identical files. @defaultValue "rlmesh-toy-v1" */
  seed?: string;
  /** Rows in `train`, split evenly over families. @defaultValue 5000 */
  trainSize?: number;
  /** Rows in `test-instances`: unseen constant combinations of training templates. @defaultValue 200 */
  testInstancesSize?: number;
  /** Rows in `test-compositional`: templates with a held-out adjacent pair of operations. @defaultValue 200 */
  testCompositionalSize?: number;
  /** Share of templates held out for the compositional split. @defaultValue 0.15 */
  heldOutTemplateFraction?: number;
  /** Share of rows in stdin/stdout program form (the rest are functions with asserts). @defaultValue 0.3 */
  programFraction?: number;
  /** Tests per row. @defaultValue 6 */
  testsPerRow?: number;
  /** Families to draw from. @defaultValue all of TOY_FAMILIES */
  families?: readonly Family[];
}

export const DEFAULT_TOY_SEED = "rlmesh-toy-v1";
export const DEFAULT_TOY_SUITE = {
  seed: DEFAULT_TOY_SEED,
  trainSize: 5000,
  testInstancesSize: 200,
  testCompositionalSize: 200,
  heldOutTemplateFraction: 0.15,
  programFraction: 0.3,
  testsPerRow: 6,
} as const;

/** Test-instance rows come only from templates with this many constant combinations, so train still sees the template. */
const MIN_COMBOS_FOR_INSTANCE_HOLDOUT = 8;
/** Draw attempts per wanted row before giving up on a small task space. */
const ATTEMPTS_PER_ROW = 50;

export interface ToySuite {
  train: TaskRow[];
  "test-instances": TaskRow[];
  "test-compositional": TaskRow[];
  /** Adjacent operation pairs held out of training, per family. */
  heldPairs: Record<string, string[]>;
  /** Splits a family could not fill: its distinct tasks ran out (e.g. strings above ~1300 train rows). */
  shortfalls: { family: string; split: ToySplit; wanted: number; got: number }[];
}

export const TOY_SPLITS: readonly ToySplit[] = ["train", "test-instances", "test-compositional"];

interface Drawn {
  inst: Instance;
  form: TaskForm;
  inputs: PyValue[];
}

/** Splits `total` into `parts` near-equal integers, earlier parts taking the remainder. */
function evenShares(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

interface DrawSpec {
  count: number;
  programFraction: number;
  testsPerRow: number;
  /** Rows that must not be drawn (e.g. held-out instances, for train). */
  excluded?: (inst: Instance) => boolean;
  /** Rows with equal identity are duplicates. */
  identity: (inst: Instance, form: TaskForm) => string;
}

/** Draws up to `spec.count` distinct rows; fewer when the templates' task space is too small. */
function drawUnique(rng: Rng, family: Family, templates: readonly Template[], spec: DrawSpec): Drawn[] {
  const out: Drawn[] = [];
  const seen = new Set<string>();
  if (templates.length === 0) return out;
  // Templates are visited in shuffled rounds, so every template gets rows before any gets many.
  let order = rng.shuffle(templates);
  let pos = 0;
  for (let attempt = 0; attempt < spec.count * ATTEMPTS_PER_ROW && out.length < spec.count; attempt++) {
    if (pos === order.length) {
      order = rng.shuffle(templates);
      pos = 0;
    }
    const inst = family.instantiate(order[pos++] as Template, rng);
    const form: TaskForm = rng.next() < spec.programFraction ? "program" : "function";
    const id = spec.identity(inst, form);
    if (seen.has(id) || spec.excluded?.(inst)) continue;
    let inputs: PyValue[];
    try {
      inputs = inst.sampleInputs(rng, spec.testsPerRow);
    } catch {
      continue; // an instance too degenerate to test well (e.g. almost every input gives 0)
    }
    seen.add(id);
    out.push({ inst, form, inputs });
  }
  return out;
}

/**
 * Generates the toy code-task suite deterministically from a seed: `train`, held-out
 * instances of the training templates (`test-instances`, the primary RL line) and held-out
 * templates (`test-compositional`, the harder line). Splits never share an instance.
 */
export function generateToySuite(options: ToySuiteOptions = {}): ToySuite {
  const o = { ...DEFAULT_TOY_SUITE, ...options };
  const families = options.families ?? TOY_FAMILIES;
  const root = createRng(o.seed);
  const trainShares = evenShares(o.trainSize, families.length);
  const instShares = evenShares(o.testInstancesSize, families.length);
  const compShares = evenShares(o.testCompositionalSize, families.length);
  const drawn: Record<ToySplit, Drawn[]> = { train: [], "test-instances": [], "test-compositional": [] };
  const heldPairs: Record<string, string[]> = {};
  const shortfalls: ToySuite["shortfalls"] = [];

  families.forEach((family, fi) => {
    const rng = root.fork(family.name);
    const split = holdOutTemplates(family.templates, o.heldOutTemplateFraction, rng.fork("holdout"));
    heldPairs[family.name] = split.heldPairs;
    const eligible = split.train.filter((t) => t.combos >= MIN_COMBOS_FOR_INSTANCE_HOLDOUT);
    const common = { programFraction: o.programFraction, testsPerRow: o.testsPerRow };
    // Held-out instances are keyed without the form, so neither form of them is trained on.
    const byKey = (i: Instance): string => i.key;
    const testInst = drawUnique(rng.fork("test-instances"), family, eligible, { ...common, count: instShares[fi] ?? 0, identity: byKey });
    const heldKeys = new Set(testInst.map((d) => d.inst.key));
    const train = drawUnique(rng.fork("train"), family, split.train, {
      ...common,
      count: trainShares[fi] ?? 0,
      excluded: (i) => heldKeys.has(i.key),
      identity: (i, f) => `${i.key}|${f}`,
    });
    const comp = drawUnique(rng.fork("test-compositional"), family, split.heldOut, {
      ...common,
      count: compShares[fi] ?? 0,
      identity: byKey,
    });
    const wanted: [ToySplit, number, number][] = [
      ["train", trainShares[fi] ?? 0, train.length],
      ["test-instances", instShares[fi] ?? 0, testInst.length],
      ["test-compositional", compShares[fi] ?? 0, comp.length],
    ];
    for (const [splitName, want, got] of wanted)
      if (got < want) shortfalls.push({ family: family.name, split: splitName, wanted: want, got });
    drawn.train.push(...train);
    drawn["test-instances"].push(...testInst);
    drawn["test-compositional"].push(...comp);
  });

  const suite: ToySuite = { train: [], "test-instances": [], "test-compositional": [], heldPairs, shortfalls };
  for (const splitName of TOY_SPLITS) {
    const rng = root.fork(`rows/${splitName}`);
    // Shuffled so any prefix of a split mixes all families.
    suite[splitName] = rng
      .shuffle(drawn[splitName])
      .map((d, i) => renderRow(d.inst, d.form, d.inputs, `toy-${splitName}-${String(i).padStart(5, "0")}`, splitName));
  }
  return suite;
}

/** JSONL text of rows: one JSON object per line, trailing newline. */
export function toJsonl(rows: readonly TaskRow[]): string {
  return rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : "");
}
