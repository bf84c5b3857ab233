/**
 * What an onnxruntime session of a model directory holds in memory: run as its own process (so
 * nothing else counts), it creates a CPU session from the model's path, runs one full forward of
 * 64 tokens and prints `{rss_after_create_mb, rss_after_forward_mb, peak_rss_mb, create_s,
 * forward_s}`. `bench import-hf --session-rss` runs it on the imported model: a float16 import's
 * session holds float32 weights (onnxruntime folds the Casts), so this shows what float16 saves
 * at run time and what it does not.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface SessionRss {
  rss_after_create_mb: number;
  rss_after_forward_mb: number;
  peak_rss_mb: number;
  create_s: number;
  forward_s: number;
}

const TOKENS = 64;
const mb = (b: number) => Math.round(b / 1024 ** 2);

async function measure(modelDir: string): Promise<SessionRss> {
  const { loadManifest, layerName } = await import("@rlmesh/shared/model/index");
  const ort = (await import("onnxruntime-node")).default;
  // The manifest alone (loadModel would read and parse the ONNX in JS, which would count too).
  const m = await loadManifest(modelDir);
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(join(modelDir, m.files.model), { intraOpNumThreads: 2 });
  const t1 = performance.now();
  const rssCreate = process.memoryUsage().rss;
  const ids = BigInt64Array.from({ length: TOKENS }, (_, i) => BigInt((i * 7 + 3) % Math.min(m.vocab_size, 1000)));
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    [m.inputs.input_ids]: new ort.Tensor("int64", ids, [1, TOKENS]),
    [m.inputs.position_ids]: new ort.Tensor("int64", BigInt64Array.from({ length: TOKENS }, (_, i) => BigInt(i)), [1, TOKENS]),
    [m.inputs.attention_mask]: new ort.Tensor("float32", new Float32Array(TOKENS).fill(1), [1, TOKENS]),
  };
  const empty = new ort.Tensor("float32", new Float32Array(0), [1, m.n_kv_heads ?? m.n_heads, 0, m.head_dim]);
  for (let i = 0; i < m.n_layers; i++) {
    if (m.inputs.past_key) feeds[layerName(m.inputs.past_key, i)] = empty;
    if (m.inputs.past_value) feeds[layerName(m.inputs.past_value, i)] = empty;
  }
  const t2 = performance.now();
  await session.run(feeds);
  const t3 = performance.now();
  return {
    rss_after_create_mb: mb(rssCreate),
    rss_after_forward_mb: mb(process.memoryUsage().rss),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    // Four decimals: a tiny model's forward takes a few ms, which two decimals would print as 0.
    create_s: +((t1 - t0) / 1000).toFixed(4),
    forward_s: +((t3 - t2) / 1000).toFixed(4),
  };
}

/** Runs the measurement in a fresh node process and returns what it printed. */
export function sessionRss(modelDir: string): Promise<SessionRss> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [fileURLToPath(import.meta.url), modelDir], { timeout: 600_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`session RSS of ${modelDir} failed: ${stderr.trim() || err.message}`));
      try {
        resolve(JSON.parse(stdout.trim().split("\n").pop()!) as SessionRss);
      } catch {
        reject(new Error(`session RSS of ${modelDir}: unexpected output ${JSON.stringify(stdout.slice(-200))}`));
      }
    }),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write("usage: node session-rss.js MODEL_DIR\n");
    process.exit(2);
  }
  console.log(JSON.stringify(await measure(dir)));
}
