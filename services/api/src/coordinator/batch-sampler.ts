/** Deterministic prompt sampling: the same (seed, step) always gives the same batch. */

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes a job seed and a step into one 32-bit seed. */
export function stepSeed(seed: number, step: number, salt = 0): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [step, salt]) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
  }
  return h >>> 0;
}

/**
 * Indices of `size` rows for `step`: an epoch-wise shuffle (every row once per epoch), so that
 * a job's steps walk the dataset without repeats until it is exhausted.
 */
export function sampleBatch(numRows: number, size: number, seed: number, step: number): number[] {
  if (numRows <= 0) throw new Error("cannot sample from an empty dataset");
  const out: number[] = [];
  let pos = (step - 1) * size;
  while (out.length < size) {
    const epoch = Math.floor(pos / numRows);
    const perm = permutation(numRows, stepSeed(seed, epoch, 0xe90c));
    out.push(perm[pos % numRows]!);
    pos++;
  }
  return out;
}

const permCache = new Map<string, number[]>();
function permutation(n: number, seed: number): number[] {
  const key = `${n}:${seed}`;
  let p = permCache.get(key);
  if (!p) {
    const rnd = mulberry32(seed);
    p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    if (permCache.size > 16) permCache.clear();
    permCache.set(key, p);
  }
  return p;
}

/** What one visit of a curriculum key showed: its group's rewards all equal (saturated) or not. */
export interface Visit {
  /** Index of the visited row in the job's rows. */
  row: number;
  /** True when the group's rewards were all equal (all 1 or all 0): nothing for GRPO to learn. */
  saturated: boolean;
}

/** A step's prompts and how many rows the curriculum passed over to draw them. */
export interface DrawnBatch {
  indices: number[];
  skipped: number;
}

/**
 * Curriculum sampling: walks the same epoch-wise shuffle as `sampleBatch`, but passes over a
 * row whose curriculum key (`keys[row]`: the row's template, else its task id) was saturated on
 * each of its last `window` visits, unless an exploration draw (probability `explore`, seeded by
 * the step) takes it anyway so that a skipped key is checked again. An informative visit clears
 * the key's streak. The batch of step k depends on the seed and on the visits recorded for steps
 * ≤ k - 1 - lag (lag 1 when step k's rollout starts before step k - 1 is scored, i.e. overlap),
 * so the same rewards give the same batches, and a restarted api that records the stored visits
 * again (`record`) draws the same batches. Draws happen in step order; a step drawn twice (a
 * retry, a prefetch) gets the same batch.
 */
export class CurriculumSampler {
  /** Consecutive saturated visits per key (the streak). */
  private readonly streak = new Map<string, number>();
  private readonly visits = new Map<number, Visit[]>();
  private readonly drawn = new Map<number, DrawnBatch>();
  private lastDrawn = 0;
  private lastApplied = 0;
  /** Position in the endless sequence of epoch shuffles. */
  private pos = 0;

  constructor(
    private readonly keys: readonly string[],
    private readonly o: { seed: number; size: number; window: number; explore: number; lag: number },
  ) {
    if (keys.length === 0) throw new Error("cannot sample from an empty dataset");
    if (!(o.window >= 1)) throw new Error(`curriculum window must be >= 1, got ${o.window}`);
    if (!(o.explore >= 0 && o.explore <= 1)) throw new Error(`curriculum explore must be in [0, 1], got ${o.explore}`);
  }

  /** Records what step `step`'s groups showed (the batch's rows, saturated or not). */
  record(step: number, visits: Visit[]): void {
    if (step <= this.lastApplied) return; // already applied (a replayed record)
    this.visits.set(step, visits);
  }

  /** Whether a key is skipped now (its last `window` visits saturated). */
  isSkipped(key: string): boolean {
    return (this.streak.get(key) ?? 0) >= this.o.window;
  }

  /** Step `step`'s batch (steps are drawn in order; earlier ones are drawn first when needed). */
  draw(step: number): DrawnBatch {
    const done = this.drawn.get(step);
    if (done) return done;
    if (step <= this.lastDrawn) throw new Error(`step ${step} was drawn before and forgotten`);
    let out: DrawnBatch | undefined;
    for (let s = this.lastDrawn + 1; s <= step; s++) {
      this.applyUpTo(s - 1 - this.o.lag);
      out = this.drawOne(s);
      this.drawn.set(s, out);
      this.lastDrawn = s;
    }
    // Only the recent draws are asked for again (a retry, a prefetched step).
    for (const s of this.drawn.keys()) if (s < step - 4) this.drawn.delete(s);
    return out!;
  }

  private applyUpTo(step: number): void {
    for (let s = this.lastApplied + 1; s <= step; s++) {
      for (const v of this.visits.get(s) ?? []) {
        const key = this.keys[v.row];
        if (key === undefined) continue;
        this.streak.set(key, v.saturated ? (this.streak.get(key) ?? 0) + 1 : 0);
      }
      this.visits.delete(s);
      this.lastApplied = s;
    }
  }

  private drawOne(step: number): DrawnBatch {
    const n = this.keys.length;
    const rnd = mulberry32(stepSeed(this.o.seed, step, 0xc0de));
    const indices: number[] = [];
    const taken = new Set<number>();
    let skipped = 0;
    let walked = 0;
    while (indices.length < this.o.size) {
      const epoch = Math.floor(this.pos / n);
      const row = permutation(n, stepSeed(this.o.seed, epoch, 0xe90c))[this.pos % n]!;
      this.pos++;
      walked++;
      // A walk can cross into the next epoch: a row is never taken twice in one step while the
      // dataset has others. Past a whole epoch's walk this step has taken every row that is not
      // skipped, and it fills up with skipped rows as they come (a step always has its prompts).
      if (taken.has(row) && taken.size < n) continue;
      if (walked <= n && this.isSkipped(this.keys[row]!) && !(rnd() < this.o.explore)) {
        skipped++;
        continue;
      }
      indices.push(row);
      taken.add(row);
    }
    return { indices, skipped };
  }
}

/** A row's curriculum key: its template when it has one, else its task id. */
export const curriculumKey = (row: { task_id: string; template?: string }): string => row.template ?? row.task_id;
