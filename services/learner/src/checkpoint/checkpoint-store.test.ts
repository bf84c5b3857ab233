import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { CheckpointInvalidError, CheckpointStore, type CheckpointData } from "./checkpoint-store.js";
import { createRng } from "../grpo/seeded-rng.js";

const storeModule = fileURLToPath(new URL("./checkpoint-store.js", import.meta.url));

function checkpoint(step: number): CheckpointData {
  const w = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i + step));
  return {
    step,
    policyVersion: step + 100,
    weights: { "layer.0.w": { shape: [10, 30], data: w }, bias: { shape: [3], data: Float32Array.of(1, 2, step) } },
    optimizer: {
      step: step * 2,
      m: { "layer.0.w": { shape: [10, 30], data: w.map((x) => x / 2) }, bias: { shape: [3], data: Float32Array.of(0.1, 0.2, 0.3) } },
      v: { "layer.0.w": { shape: [10, 30], data: w.map((x) => x * x) }, bias: { shape: [3], data: Float32Array.of(1, 1, 1) } },
    },
    rngState: createRng(step).state(),
    extra: { lrScale: 0.5 },
  };
}

async function tempRoot(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "rlmesh-ckpt-test-"));
}

test("save then load returns weights, optimizer state, step, RNG state and version unchanged", async () => {
  const root = await tempRoot();
  try {
    const store = new CheckpointStore(root);
    await store.save(checkpoint(7));
    const back = await store.load(7);
    assert.deepEqual(back, checkpoint(7));
    assert.deepEqual((await store.loadLatest())?.step, 7);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test("keeps the last K checkpoints, plus protected ones", async () => {
  const root = await tempRoot();
  try {
    const store = new CheckpointStore(root, { keepLast: 2, isProtected: (s) => s === 1 });
    for (const s of [1, 2, 3, 4]) await store.save(checkpoint(s));
    assert.deepEqual(await store.listSteps(), [4, 3, 1]);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test("a corrupt newest checkpoint is refused and the previous one is loaded", async () => {
  const root = await tempRoot();
  try {
    const store = new CheckpointStore(root, { keepLast: 5 });
    await store.save(checkpoint(1));
    const dir = await store.save(checkpoint(2));
    const file = path.join(dir, "tensors.bin");
    const bytes = await fs.readFile(file);
    bytes[10] = bytes[10]! ^ 0xff;
    await fs.writeFile(file, bytes);
    await assert.rejects(store.load(2), CheckpointInvalidError);
    assert.equal((await store.loadLatest())?.step, 1);
    await fs.rm(path.join(dir, "manifest.json"));
    await assert.rejects(store.load(2), CheckpointInvalidError);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

/** A child process saves step 2 and SIGKILLs itself at `stage`, after step 1 was saved. */
function crashWhileSaving(root: string, stage: string): void {
  const script = `
    import { CheckpointStore } from ${JSON.stringify(storeModule)};
    const ck = (step) => ({ step, policyVersion: step, weights: { w: { shape: [4096], data: new Float32Array(4096).fill(step) } },
      optimizer: { step, m: { w: { shape: [4096], data: new Float32Array(4096) } }, v: { w: { shape: [4096], data: new Float32Array(4096) } } },
      rngState: [1, 2, 3, 4] });
    await new CheckpointStore(${JSON.stringify(root)}).save(ck(1));
    const store = new CheckpointStore(${JSON.stringify(root)}, { onStage: (s) => { if (s === ${JSON.stringify(stage)}) process.kill(process.pid, "SIGKILL"); } });
    await store.save(ck(2));
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.signal, "SIGKILL", `child should die by SIGKILL at ${stage}; stderr: ${r.stderr}`);
}

test("a writer killed mid-write (SIGKILL) leaves the previous checkpoint loadable", async () => {
  for (const stage of ["tensors-written", "manifest-written"]) {
    const root = await tempRoot();
    try {
      crashWhileSaving(root, stage);
      const store = new CheckpointStore(root);
      assert.deepEqual(await store.listSteps(), [1], `after a kill at ${stage} no step-2 directory exists`);
      const latest = await store.loadLatest();
      assert.equal(latest?.step, 1);
      assert.equal(latest?.weights["w"]!.data[0], 1);
      // The next successful save cleans the leftover temporary directory.
      await store.save(checkpoint(3));
      const names = await fs.readdir(root);
      assert.ok(
        names.every((n) => !n.startsWith(".tmp")),
        `leftovers: ${names.join(",")}`,
      );
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  }
});
