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
