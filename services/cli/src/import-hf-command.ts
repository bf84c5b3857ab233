import { mkdtemp, rm, stat, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { HfImportError, importHfCheckpoint } from "@rlmesh/shared/model/index";
import { flagBool, flagString, parseArgs, UsageError } from "./args.js";

/**
 * `rlmesh import-hf SRC_DIR --out DIR [--dtype float32|float16] [--name N] [--json]` (registered,
 * with its usage and help, in delegated-commands.ts, which loads this module on demand).
 */
export async function importHfRun(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ["json"]);
  const src = a.positional[0];
  if (!src || a.positional.length > 1) throw new UsageError("give exactly one SRC_DIR (a Hugging Face model directory)");
  const out = flagString(a, "out");
  if (!out) throw new UsageError("--out DIR is required");
  const dtype = flagString(a, "dtype", "float32");
  if (dtype !== "float32" && dtype !== "float16") throw new UsageError(`--dtype must be float32 or float16, got ${dtype}`);
  const json = flagBool(a, "json");
  const name = flagString(a, "name");
  const specialIds: Partial<Record<"mask" | "pad" | "eos", number>> = {};
  for (const role of ["mask", "pad", "eos"] as const) {
    const v = flagString(a, `${role}-id`);
    if (v === undefined) continue;
    const id = Number(v);
    if (!Number.isInteger(id) || id < 0) throw new UsageError(`--${role}-id must be a non-negative integer, got ${v}`);
    specialIds[role] = id;
  }
  try {
    const r = await importHfCheckpoint(src, {
      out,
      dtype,
      ...(name ? { name } : {}),
      specialIds,
      onProgress: (line) => (json ? process.stderr : process.stdout).write(line + "\n"),
    });
    const m = r.model.manifest;
    if (json) {
      console.log(
        JSON.stringify({
          out: resolve(out),
          model_type: r.modelType,
          name: m.name,
          parameters: r.parameters,
          weight_bytes: r.weightBytes,
          weight_dtype: m.weight_dtype ?? "float32",
          external_data: r.external,
          seconds: r.seconds,
          vocab_size: m.vocab_size,
          shifted_logits: m.shifted_logits,
          mask_id: m.mask_id,
          pad_id: m.pad_id,
          eos_id: m.eos_id,
          ...(m.expand_id !== undefined ? { expand_id: m.expand_id, delete_id: m.delete_id } : {}),
        }),
      );
    } else {
      console.log(
        `${m.name}: ${r.modelType}, ${(r.parameters / 1e6).toFixed(1)} M params (${m.weight_dtype ?? "float32"} weights), vocab ${m.vocab_size}, shifted_logits ${m.shifted_logits}, ` +
          `mask ${m.mask_id} pad ${m.pad_id} eos ${m.eos_id}${m.expand_id !== undefined ? ` expand ${m.expand_id} delete ${m.delete_id}` : ""}`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof HfImportError) {
      console.error(`rlmesh import-hf: ${err.message}${err.message.startsWith("--") ? "" : ` (checkpoint ${src})`}`);
      return 1;
    }
    throw err;
  }
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

/**
 * `rlmesh bench import-hf [--size 100m|tiny] [--dtype float32|float16] [--out DIR] [--checkpoint DIR] [--session-rss] [--json]`:
 * writes a random Dream-architecture checkpoint (BF16, like the released ones) with the test
 * fixture, then times import-hf on it (--dtype as import-hf's). --out keeps the imported model (e.g.
 * for `bench decode --model DIR`); --checkpoint keeps the checkpoint there, or reuses the one
 * already there (then --size is not checked against it). --session-rss then measures what an
 * onnxruntime session of the imported model holds (rollout session-rss.ts, in its own process).
 */
export async function benchImportHfCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ["json", "session-rss"]);
  const size = flagString(a, "size", "100m");
  if (size !== "100m" && size !== "tiny") throw new UsageError(`--size must be 100m or tiny, got ${size}`);
  const dtype = flagString(a, "dtype", "float32");
  if (dtype !== "float32" && dtype !== "float16") throw new UsageError(`--dtype must be float32 or float16, got ${dtype}`);
  const json = flagBool(a, "json");
  const log = (line: string) => (json ? process.stderr : process.stdout).write(line + "\n");
  const { writeHfFixture } = await import("@rlmesh/shared/model/hf/testing/hf-fixture");
  const work = await mkdtemp(join(tmpdir(), "rlmesh-bench-import-"));
  const keepCkpt = flagString(a, "checkpoint");
  const src = keepCkpt ? resolve(keepCkpt) : join(work, "checkpoint");
  const outFlag = flagString(a, "out");
  const out = outFlag ? resolve(outFlag) : join(work, "imported");
  try {
    const reuse =
      keepCkpt !== undefined &&
      (await stat(join(src, "config.json")).then(
        () => true,
        () => false,
      ));
    if (reuse) log(`bench import-hf: reusing the checkpoint in ${src}`);
    else {
      log(`bench import-hf: writing a random ${size} Dream-architecture checkpoint (BF16) to ${src} ...`);
      const t0 = performance.now();
      await writeHfFixture({ modelType: "Dream", size, dir: src, dtype: "BF16", seed: 1 });
      log(`bench import-hf: checkpoint written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const ckptBytes = await dirBytes(src);
    log(`bench import-hf: checkpoint ${(ckptBytes / 1024 ** 2).toFixed(0)} MB; importing ...`);
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const timer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const r = await importHfCheckpoint(src, { out, dtype, onProgress: log }).finally(() => clearInterval(timer));
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const outBytes = await dirBytes(out);
    const result = {
      size,
      dtype,
      model_type: r.modelType,
      parameters: r.parameters,
      checkpoint_mb: +(ckptBytes / 1024 ** 2).toFixed(1),
      imported_mb: +(outBytes / 1024 ** 2).toFixed(1),
      import_s: +r.seconds.toFixed(2),
      import_mb_per_s: +(ckptBytes / 1024 ** 2 / r.seconds).toFixed(1),
      external_data: r.external,
      peak_rss_mb: Math.round(peakRss / 1024 ** 2),
      ...(outFlag ? { out } : {}),
      ...(flagBool(a, "session-rss") ? { session: await (await import("@rlmesh/rollout/session-rss")).sessionRss(out) } : {}),
    };
    if (json) console.log(JSON.stringify(result));
    else {
      console.log(
        `import-hf ${size}: ${(r.parameters / 1e6).toFixed(1)} M params, checkpoint ${result.checkpoint_mb} MB (BF16) → ${result.imported_mb} MB (${dtype} ONNX) ` +
          `in ${result.import_s} s (${result.import_mb_per_s} MB/s of checkpoint), peak RSS ${result.peak_rss_mb} MB` +
          (result.session
            ? `\nonnxruntime session of it (own process, one 64-token forward): RSS ${result.session.rss_after_forward_mb} MB, peak ${result.session.peak_rss_mb} MB, forward ${result.session.forward_s} s`
            : "") +
          (outFlag ? `\nmodel kept at ${out} (try: npx rlmesh bench decode --model ${out})` : ""),
      );
    }
    return 0;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
