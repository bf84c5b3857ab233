/**
 * Small deterministic PRNG (xoshiro128**) whose whole state is four uint32s, so it can be stored
 * in a checkpoint and in a sample's mask plan and replayed bit-for-bit.
 */

export type RngState = [number, number, number, number];

export interface SeededRng {
  /** Next uniform uint32. */
  nextUint32(): number;
  /** Next uniform float in [0, 1) with 32 bits of resolution. */
  nextFloat(): number;
  /** Integer in [0, n). */
  nextInt(n: number): number;
  /** Copy of the current state (resume with `rngFromState`). */
  state(): RngState;
}

/** splitmix32 step: spreads a seed over the state so nearby seeds give unrelated streams. */
function splitmix32(x: number): [number, number] {
  const next = (x + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/** Mixes a base seed with any number of integers (sample index, mask epoch, ...) into one uint32. */
export function deriveSeed(base: number, ...parts: number[]): number {
  let [s, h] = splitmix32(base >>> 0);
  for (const p of parts) {
    [s, h] = splitmix32((s ^ Math.imul(h, 0x27d4eb2f) ^ (p >>> 0)) >>> 0);
  }
  return h;
}

export function createRng(seed: number): SeededRng {
  let s = seed >>> 0;
  const st: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [next, out] = splitmix32(s);
    s = next;
    st.push(out);
  }
  // xoshiro must not start from the all-zero state.
  if ((st[0]! | st[1]! | st[2]! | st[3]!) === 0) st[0] = 1;
  return rngFromState(st as RngState);
}

export function rngFromState(initial: RngState): SeededRng {
  let [a, b, c, d] = initial.map((v) => v >>> 0) as RngState;
  const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c = (c ^ a) >>> 0;
    d = (d ^ b) >>> 0;
    b = (b ^ c) >>> 0;
    a = (a ^ d) >>> 0;
    c = (c ^ t) >>> 0;
    d = rotl(d, 11);
    return result;
  };
  return {
    nextUint32,
    nextFloat: () => nextUint32() / 4294967296,
    nextInt: (n) => {
      if (!Number.isInteger(n) || n <= 0) throw new RangeError(`nextInt needs a positive integer, got ${n}`);
      return Math.floor((nextUint32() / 4294967296) * n);
    },
    state: () => [a, b, c, d],
  };
}
