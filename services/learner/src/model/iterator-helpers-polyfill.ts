/**
 * ES2025 iterator helpers (Iterator.prototype.map, filter, …) that jax-js calls but Node 20 lacks.
 * Installed only where missing, so newer Node keeps its native versions.
 */
type AnyIterator = Iterator<unknown> & Iterable<unknown>;

const iteratorProto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())) as Record<string, unknown>;

function* mapGen(it: AnyIterator, fn: (v: unknown, i: number) => unknown) {
  let i = 0;
  for (const v of it) yield fn(v, i++);
}
function* filterGen(it: AnyIterator, fn: (v: unknown, i: number) => unknown) {
  let i = 0;
  for (const v of it) if (fn(v, i++)) yield v;
}
function* takeGen(it: AnyIterator, n: number) {
  if (n <= 0) return;
  let i = 0;
  for (const v of it) {
    yield v;
    if (++i >= n) return;
  }
}
function* dropGen(it: AnyIterator, n: number) {
  let i = 0;
  for (const v of it) if (i++ >= n) yield v;
}
function* flatMapGen(it: AnyIterator, fn: (v: unknown, i: number) => Iterable<unknown>) {
  let i = 0;
  for (const v of it) yield* fn(v, i++);
}

const helpers: Record<string, (this: AnyIterator, ...args: never[]) => unknown> = {
  map(fn: (v: unknown, i: number) => unknown) {
    return mapGen(this, fn);
  },
  filter(fn: (v: unknown, i: number) => unknown) {
    return filterGen(this, fn);
  },
  take(n: number) {
    return takeGen(this, n);
  },
  drop(n: number) {
    return dropGen(this, n);
  },
  flatMap(fn: (v: unknown, i: number) => Iterable<unknown>) {
    return flatMapGen(this, fn);
  },
  toArray() {
    return [...this];
  },
  forEach(fn: (v: unknown, i: number) => void) {
    let i = 0;
    for (const v of this) fn(v, i++);
  },
  some(fn: (v: unknown, i: number) => unknown) {
    let i = 0;
    for (const v of this) if (fn(v, i++)) return true;
    return false;
  },
  every(fn: (v: unknown, i: number) => unknown) {
    let i = 0;
    for (const v of this) if (!fn(v, i++)) return false;
    return true;
  },
  find(fn: (v: unknown, i: number) => unknown) {
    let i = 0;
    for (const v of this) if (fn(v, i++)) return v;
    return undefined;
  },
  reduce(fn: (acc: unknown, v: unknown, i: number) => unknown, ...init: unknown[]) {
    let i = 0;
    let acc: unknown;
    let started = init.length > 0;
    if (started) acc = init[0];
    for (const v of this) {
      if (!started) {
        acc = v;
        started = true;
      } else acc = fn(acc, v, i);
      i++;
    }
    if (!started) throw new TypeError("Reduce of empty iterator with no initial value");
    return acc;
  },
};

for (const [name, fn] of Object.entries(helpers)) {
  if (typeof iteratorProto[name] !== "function") {
    Object.defineProperty(iteratorProto, name, { value: fn, writable: true, configurable: true });
  }
}

const g = globalThis as Record<string, unknown>;
if (g["Iterator"] === undefined) {
  const IteratorCtor = function Iterator() {} as unknown as { prototype: unknown; from: (x: unknown) => unknown };
  IteratorCtor.prototype = iteratorProto;
  IteratorCtor.from = (x: unknown) => {
    const obj = x as { [Symbol.iterator]?: () => unknown; next?: unknown };
    if (typeof obj[Symbol.iterator] === "function") return obj[Symbol.iterator]!();
    return x;
  };
  g["Iterator"] = IteratorCtor;
}

export {};
