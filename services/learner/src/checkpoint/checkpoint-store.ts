import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { NamedTensors } from "../optim/named-tensors.js";
import type { AdamWState } from "../optim/adamw.js";

/**
 * Checkpoints on local disk, one directory per step:
 *   <root>/ckpt-<step, 12 digits>/tensors.bin   float32 little-endian, concatenated
 *   <root>/ckpt-<step>/manifest.json            layout, sha256 of tensors.bin, step, RNG, version
 * A checkpoint is written into a temporary directory (tensors fsync'ed, manifest last and fsync'ed),
 * which is then renamed into place and the root fsync'ed: a crash at any point leaves either the
 * complete new checkpoint or none, never a torn one under a final name.
 */

export const DEFAULT_KEEP_LAST = 3;
export const CHECKPOINT_FORMAT_VERSION = 1;
const DIR_PREFIX = "ckpt-";
const TMP_PREFIX = ".tmp-ckpt-";
const TENSORS_FILE = "tensors.bin";
const MANIFEST_FILE = "manifest.json";

export interface CheckpointData {
  /** Optimizer steps applied so far. */
  step: number;
  /** Policy version these weights are published as. */
  policyVersion: number;
  weights: NamedTensors;
  optimizer: AdamWState;
  /** Any JSON-serialisable RNG state (e.g. SeededRng.state()). */
  rngState: unknown;
  /** Small JSON extras (LR scale of the collapse guard, config hash, ...). */
  extra?: Record<string, unknown>;
}

interface TensorEntry {
  /** "w/<name>", "m/<name>" or "v/<name>". */
  key: string;
  shape: number[];
  offset: number;
  length: number;
}

interface Manifest {
  format: number;
  step: number;
  policyVersion: number;
  optimizerStep: number;
  rngState: unknown;
  extra: Record<string, unknown>;
  tensors: TensorEntry[];
  tensorsBytes: number;
  tensorsSha256: string;
  writtenAt: string;
}

/** Thrown when a checkpoint directory is incomplete, corrupt or of an unknown format. */
export class CheckpointInvalidError extends Error {
  override name = "CheckpointInvalidError";
}

/** Stages a write passes through; tests kill the writer at one of them. */
export type CheckpointWriteStage = "tensors-written" | "manifest-written" | "renamed";

export interface CheckpointStoreOptions {
  /** How many complete checkpoints to keep. @defaultValue DEFAULT_KEEP_LAST */
  keepLast?: number;
  /** Called after each stage of a write (test seam for crash injection). */
  onStage?: (stage: CheckpointWriteStage) => void | Promise<void>;
  /** Steps never pruned even beyond `keepLast` (e.g. the collapse guard's last good one). */
  isProtected?: (step: number) => boolean;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function dirName(step: number): string {
  return `${DIR_PREFIX}${String(step).padStart(12, "0")}`;
}

async function fsyncPath(p: string): Promise<void> {
  const h = await fs.open(p, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

function f32Bytes(data: Float32Array): Buffer {
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (littleEndian) return view;
  const copy = Buffer.from(view);
  for (let i = 0; i < copy.length; i += 4) copy.subarray(i, i + 4).reverse();
  return copy;
}

function f32FromBytes(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  const u8 = new Uint8Array(out.buffer);
  u8.set(bytes);
  if (!littleEndian) for (let i = 0; i < u8.length; i += 4) u8.subarray(i, i + 4).reverse();
  return out;
}

export class CheckpointStore {
  private readonly keepLast: number;

  constructor(
    readonly root: string,
    private readonly opts: CheckpointStoreOptions = {},
  ) {
    this.keepLast = opts.keepLast ?? DEFAULT_KEEP_LAST;
    if (!Number.isInteger(this.keepLast) || this.keepLast < 1)
      throw new RangeError(`keepLast must be a positive integer, got ${this.keepLast}`);
  }

  /** Writes a checkpoint atomically, then prunes to the last `keepLast`. Returns its directory. */
  async save(ck: CheckpointData): Promise<string> {
    await fs.mkdir(this.root, { recursive: true });
    const tmp = await fs.mkdtemp(path.join(this.root, TMP_PREFIX));
    const entries: TensorEntry[] = [];
    const chunks: Buffer[] = [];
    let offset = 0;
    const add = (prefix: string, tensors: NamedTensors): void => {
      for (const name of Object.keys(tensors).sort()) {
        const t = tensors[name]!;
        const b = f32Bytes(t.data);
        entries.push({ key: `${prefix}/${name}`, shape: [...t.shape], offset, length: t.data.length });
        chunks.push(b);
        offset += b.length;
      }
    };
    add("w", ck.weights);
    add("m", ck.optimizer.m);
    add("v", ck.optimizer.v);
    const hash = createHash("sha256");
    const fh = await fs.open(path.join(tmp, TENSORS_FILE), "w");
    try {
      for (const c of chunks) {
        hash.update(c);
        await fh.write(c);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.opts.onStage?.("tensors-written");
    const manifest: Manifest = {
      format: CHECKPOINT_FORMAT_VERSION,
      step: ck.step,
      policyVersion: ck.policyVersion,
      optimizerStep: ck.optimizer.step,
      rngState: ck.rngState,
      extra: ck.extra ?? {},
      tensors: entries,
      tensorsBytes: offset,
      tensorsSha256: hash.digest("hex"),
      writtenAt: new Date().toISOString(),
    };
    const mh = await fs.open(path.join(tmp, MANIFEST_FILE), "w");
    try {
      await mh.writeFile(JSON.stringify(manifest));
      await mh.sync();
    } finally {
      await mh.close();
    }
    await fsyncPath(tmp);
    await this.opts.onStage?.("manifest-written");
    const final = path.join(this.root, dirName(ck.step));
    // Re-saving a step replaces it; the old copy is moved aside first so the rename stays atomic.
    await fs.rm(final, { recursive: true, force: true });
    await fs.rename(tmp, final);
    await fsyncPath(this.root);
    await this.opts.onStage?.("renamed");
    await this.prune();
    return final;
  }

  /** Steps of the checkpoint directories present (complete or not), newest first. */
  async listSteps(): Promise<number[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    return names
      .filter((n) => n.startsWith(DIR_PREFIX) && /^\d+$/.test(n.slice(DIR_PREFIX.length)))
      .map((n) => Number(n.slice(DIR_PREFIX.length)))
      .sort((a, b) => b - a);
  }

  /** Loads and validates the checkpoint of `step`; throws CheckpointInvalidError if it is not whole. */
  async load(step: number): Promise<CheckpointData> {
    const dir = path.join(this.root, dirName(step));
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await fs.readFile(path.join(dir, MANIFEST_FILE), "utf8")) as Manifest;
    } catch (err) {
      throw new CheckpointInvalidError(`checkpoint ${dir}: manifest missing or unreadable (${(err as Error).message})`);
    }
    if (manifest.format !== CHECKPOINT_FORMAT_VERSION)
      throw new CheckpointInvalidError(`checkpoint ${dir}: format ${manifest.format}, expected ${CHECKPOINT_FORMAT_VERSION}`);
    if (manifest.step !== step) throw new CheckpointInvalidError(`checkpoint ${dir}: manifest says step ${manifest.step}`);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(path.join(dir, TENSORS_FILE));
    } catch (err) {
      throw new CheckpointInvalidError(`checkpoint ${dir}: tensors unreadable (${(err as Error).message})`);
    }
    if (bytes.length !== manifest.tensorsBytes)
      throw new CheckpointInvalidError(`checkpoint ${dir}: tensors.bin has ${bytes.length} bytes, manifest says ${manifest.tensorsBytes}`);
    const sha = createHash("sha256").update(bytes).digest("hex");
    if (sha !== manifest.tensorsSha256) throw new CheckpointInvalidError(`checkpoint ${dir}: tensors.bin checksum mismatch`);
    const groups: Record<string, NamedTensors> = { w: {}, m: {}, v: {} };
    for (const e of manifest.tensors) {
      const slash = e.key.indexOf("/");
      const group = groups[e.key.slice(0, slash)];
      if (!group || e.offset + e.length * 4 > bytes.length)
        throw new CheckpointInvalidError(`checkpoint ${dir}: bad tensor entry ${e.key}`);
      group[e.key.slice(slash + 1)] = { shape: e.shape, data: f32FromBytes(bytes.subarray(e.offset, e.offset + e.length * 4)) };
    }
    return {
      step: manifest.step,
      policyVersion: manifest.policyVersion,
      weights: groups.w!,
      optimizer: { step: manifest.optimizerStep, m: groups.m!, v: groups.v! },
      rngState: manifest.rngState,
      extra: manifest.extra,
    };
  }

  /**
   * The newest checkpoint that validates (at or below `maxStep` if given), skipping corrupt ones;
   * null when there is none.
   */
  async loadLatest(maxStep = Number.POSITIVE_INFINITY): Promise<CheckpointData | null> {
    for (const step of await this.listSteps()) {
      if (step > maxStep) continue;
      try {
        return await this.load(step);
      } catch (err) {
        if (!(err instanceof CheckpointInvalidError)) throw err;
      }
    }
    return null;
  }

  /** Removes leftover temporary directories and all but the newest `keepLast` checkpoints. */
  async prune(): Promise<void> {
    const names = await fs.readdir(this.root);
    for (const n of names) if (n.startsWith(TMP_PREFIX)) await fs.rm(path.join(this.root, n), { recursive: true, force: true });
    const steps = await this.listSteps();
    for (const step of steps.slice(this.keepLast)) {
      if (this.opts.isProtected?.(step)) continue;
      await fs.rm(path.join(this.root, dirName(step)), { recursive: true, force: true });
    }
  }
}
