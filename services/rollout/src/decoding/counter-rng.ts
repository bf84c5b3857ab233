/**
 * Counter-based random numbers: every draw is a pure hash of (seed, step, position, stream),
 * so a sequence's samples do not depend on which other sequences share its batch, on the
 * order in which positions are visited, or on whether the KV cache is used.
 */

/** Streams keep independent draws apart at the same (step, position). */
export const RNG_STREAM_TOKEN = 0;
export const RNG_STREAM_ORDER = 1;

const TWO_POW_32 = 4294967296;

function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform in the open interval (0, 1) for the given counter. `seed` may be any integer up to 2^53. */
export function counterUniform(seed: number, step: number, position: number, stream: number): number {
  const lo = seed % TWO_POW_32;
  const hi = Math.floor(seed / TWO_POW_32);
  let h = mix32(lo ^ 0x9e3779b9);
  h = mix32(h ^ Math.imul(hi + 0x632be5ab, 0x85ebca6b));
  h = mix32(h ^ Math.imul(step + 0x1b873593, 0xcc9e2d51));
  h = mix32(h ^ Math.imul(position + 0x5bd1e995, 0x27d4eb2f));
  h = mix32(h ^ Math.imul(stream + 0x165667b1, 0x9e3779b1));
  return (h + 0.5) / TWO_POW_32;
}

/** Derives a per-sample seed from a request seed and the sample's index (stable, order-free). */
export function deriveSeed(baseSeed: number, index: number): number {
  const a = mix32(Math.floor(baseSeed % TWO_POW_32) ^ mix32(index + 0x68e31da4));
  const b = mix32(Math.floor(baseSeed / TWO_POW_32) ^ mix32(index ^ 0xb5297a4d) ^ a);
  // 53 bits so it survives a JS number round trip.
  return (b & 0x1fffff) * TWO_POW_32 + a;
}
