import type { Template } from "./family.js";
import type { Rng } from "./prng.js";

/** Adjacent kind pairs of a template: ["add","mul","sub"] -> ["add>mul", "mul>sub"]. */
export function adjacentPairs(kinds: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < kinds.length; i++) out.push(`${kinds[i - 1]}>${kinds[i]}`);
  return out;
}

export interface TemplateHoldout {
  heldPairs: string[];
  train: Template[];
  heldOut: Template[];
}

/**
 * Chooses adjacent kind pairs to hold out until about `fraction` of the templates contain
 * one; those templates form the compositional split. A pair is skipped when holding it out
 * would leave some kind (at some position) absent from the training templates, so every
 * operation is still learnable, only its combination is new.
 */
export function holdOutTemplates(templates: readonly Template[], fraction: number, rng: Rng): TemplateHoldout {
  const allPairs = [...new Set(templates.flatMap((t) => adjacentPairs(t.kinds)))].sort();
  const held = new Set<string>();
  const isHeld = (t: Template, pairs: Set<string>): boolean => adjacentPairs(t.kinds).some((p) => pairs.has(p));
  const coverage = (ts: readonly Template[]): Set<string> => new Set(ts.flatMap((t) => t.kinds.map((k, i) => `${i}:${k}`)));
  const needed = coverage(templates);
  const target = Math.round(templates.length * fraction);
  for (const pair of rng.shuffle(allPairs)) {
    if (templates.filter((t) => isHeld(t, held)).length >= target) break;
    const trial = new Set([...held, pair]);
    const heldCount = templates.filter((t) => isHeld(t, trial)).length;
    if (heldCount > target * 1.5) continue;
    const trainCover = coverage(templates.filter((t) => !isHeld(t, trial)));
    if ([...needed].every((k) => trainCover.has(k))) held.add(pair);
  }
  return {
    heldPairs: [...held].sort(),
    train: templates.filter((t) => !isHeld(t, held)),
    heldOut: templates.filter((t) => isHeld(t, held)),
  };
}
