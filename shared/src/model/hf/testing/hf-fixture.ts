import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { DEFAULT_MODEL_DIR } from "../../../repo-paths.js";
import { SeededRandom } from "../../seeded-random.js";
import { hfArchitecture } from "../hf-architectures.js";
import type { HfModelType } from "../hf-architectures.js";
import { encodeSafetensors } from "../safetensors.js";
import type { SafetensorsDtype, SafetensorsEntry } from "../safetensors.js";

/**
 * Test and benchmark fixture: writes a random-initialised checkpoint in the exact Hugging Face
 * layout of a family — config.json with the real key names, *.safetensors with the real tensor
 * names (optionally sharded with model.safetensors.index.json), generation_config.json,
 * tokenizer.json and tokenizer_config.json. No checkpoint can be downloaded here; this is what the
 * importer, the PyTorch reference forward and the benchmarks read.
 *
 * The tokenizer is the shipped tiny-coder's (its specials `<|mask|>` 0, `<|pad|>` 1, `<|eos|>` 2,
 * `<|bos|>` 3), so an imported fixture can run the toy tasks; `editTokens` appends DreamOn's
 * `<|expand|>` / `<|delete|>`; LLaDA's fixture renames the mask to its `<|mdm_mask|>`. For the
 * `100m` size the vocabulary is padded with filler tokens to Qwen's 151936 ids.
 */

export interface HfFixtureOptions {
  modelType: HfModelType;
  dir: string;
  seed?: number;
  /** "tiny" (CI: d 32, 2 layers) or "100m" (Dream architecture: d 768, 12 layers, 12/2 heads, ff 3072, vocab 151936, tied head). */
  size?: "tiny" | "100m";
  /** Two shards + model.safetensors.index.json instead of one model.safetensors. */
  sharded?: boolean;
  dtype?: SafetensorsDtype;
  tied?: boolean;
  editTokens?: boolean;
  /** Scale of the random weights (larger than init scale so attention is far from uniform). @defaultValue 0.3 for tiny, 0.02 for 100m */
  std?: number;
  /** Extra or replaced config.json keys (a key set to undefined is removed). */
  configOverrides?: Record<string, unknown>;
}

export interface HfFixture {
  dir: string;
  config: Record<string, unknown>;
  /** Tensor names in the order written. */
  tensorNames: string[];
  vocabSize: number;
  ids: { mask: number; pad: number; eos: number };
}

export const QWEN_VOCAB_SIZE = 151936;

async function tinyTokenizer(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(DEFAULT_MODEL_DIR, "tokenizer.json"), "utf8")) as Record<string, unknown>;
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  [k: string]: unknown;
}

function tokenizerSize(tok: Record<string, unknown>): number {
  const vocab = (tok["model"] as { vocab: Record<string, number> }).vocab;
  let n = 0;
  for (const id of Object.values(vocab)) n = Math.max(n, id + 1);
  for (const t of tok["added_tokens"] as AddedToken[]) n = Math.max(n, t.id + 1);
  return n;
}

function addToken(tok: Record<string, unknown>, content: string, id: number): void {
  const added = tok["added_tokens"] as AddedToken[];
  added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
}

export async function writeHfFixture(o: HfFixtureOptions): Promise<HfFixture> {
  const size = o.size ?? "tiny";
  const rng = new SeededRandom(o.seed ?? 1);
  const tok = await tinyTokenizer();
  if (o.modelType === "llada") {
    const mask = (tok["added_tokens"] as AddedToken[]).find((t) => t.id === 0)!;
    mask.content = "<|mdm_mask|>";
  }
  if (size === "100m") {
    const vocab = (tok["model"] as { vocab: Record<string, number> }).vocab;
    for (let id = tokenizerSize(tok); id < QWEN_VOCAB_SIZE; id++) vocab[`<|filler_${id}|>`] = id;
  }
  if (o.editTokens) {
    const n = tokenizerSize(tok);
    addToken(tok, "<|expand|>", n);
    addToken(tok, "<|delete|>", n + 1);
  }
  const tokSize = tokenizerSize(tok);
  // Like Qwen's 152064 > 151665: the model's vocab rounded up past the tokenizer's.
  const vocab = size === "100m" ? QWEN_VOCAB_SIZE : Math.ceil(tokSize / 16) * 16 + 16;
  const ids = { mask: 0, pad: 1, eos: 2 };
  const tied = o.tied ?? size === "100m";
  let config: Record<string, unknown>;
  if (o.modelType === "Dream") {
    const big = size === "100m";
    config = {
      architectures: ["DreamModel"],
      auto_map: { AutoConfig: "configuration_dream.DreamConfig", AutoModel: "modeling_dream.DreamModel" },
      model_type: "Dream",
      attention_dropout: 0.0,
      bos_token_id: 3,
      eos_token_id: ids.eos,
      pad_token_id: ids.pad,
      mask_token_id: ids.mask,
      hidden_act: "silu",
      hidden_size: big ? 768 : 32,
      intermediate_size: big ? 3072 : 48,
      initializer_range: 0.02,
      max_position_embeddings: big ? 4096 : 256,
      max_window_layers: big ? 12 : 2,
      num_attention_heads: big ? 12 : 4,
      num_hidden_layers: big ? 12 : 2,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-6,
      rope_scaling: null,
      rope_theta: 1000000.0,
      sliding_window: null,
      tie_word_embeddings: tied,
      torch_dtype: o.dtype === "BF16" ? "bfloat16" : "float32",
      transformers_version: "4.46.2",
      use_cache: true,
      use_sliding_window: false,
      vocab_size: vocab,
    };
  } else {
    config = {
      activation_type: "silu",
      alibi: false,
      alibi_bias_max: 8.0,
      architectures: ["LLaDAModelLM"],
      attention_dropout: 0.0,
      attention_layer_norm: false,
      attention_layer_norm_with_affine: true,
      auto_map: { AutoConfig: "configuration_llada.LLaDAConfig", AutoModel: "modeling_llada.LLaDAModelLM" },
      bias_for_layer_norm: false,
      block_group_size: 1,
      block_type: "llama",
      d_model: 32,
      embedding_dropout: 0.0,
      embedding_size: vocab,
      eos_token_id: ids.eos,
      flash_attention: false,
      include_bias: false,
      include_qkv_bias: false,
      init_device: "meta",
      init_fn: "mitchell",
      init_std: 0.02,
      input_emb_norm: false,
      layer_norm_type: "rms",
      layer_norm_with_affine: true,
      mask_token_id: ids.mask,
      max_sequence_length: 256,
      mlp_hidden_size: 40,
      mlp_ratio: 4,
      model_type: "llada",
      multi_query_attention: null,
      n_heads: 4,
      n_kv_heads: 4,
      n_layers: 2,
      pad_token_id: ids.pad,
      precision: "amp_bf16",
      residual_dropout: 0.0,
      rms_norm_eps: 1e-5,
      rope: true,
      rope_full_precision: true,
      rope_theta: 500000.0,
      scale_logits: false,
      transformers_version: "4.46.3",
      use_cache: false,
      vocab_size: tokSize,
      weight_tying: tied,
    };
  }
  for (const [k, v] of Object.entries(o.configOverrides ?? {})) {
    if (v === undefined) delete config[k];
    else config[k] = v;
  }
  // Shapes from the importer's own table of the family (the real names and [out, in] layouts).
  const arch = hfArchitecture(config);
  const std = o.std ?? (size === "100m" ? 0.02 : 0.3);
  const entries: SafetensorsEntry[] = arch.tensors.map((m) => {
    const n = m.hfShape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = m.rl.endsWith("norm");
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + 0.1 * rng.normal() : rng.normal() * std;
    return { name: m.hf, shape: m.hfShape, data, ...(o.dtype ? { dtype: o.dtype } : {}) };
  });
  await mkdir(o.dir, { recursive: true });
  const metadata = { format: "pt" };
  if (o.sharded) {
    const half = Math.ceil(entries.length / 2);
    const shards = [entries.slice(0, half), entries.slice(half)];
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(join(o.dir, file), encodeSafetensors(shard, metadata));
      for (const e of shard) {
        weightMap[e.name] = file;
        total += e.data.length * (e.dtype === "F32" || !e.dtype ? 4 : 2);
      }
    }
    await writeFile(join(o.dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  } else {
    await writeFile(join(o.dir, "model.safetensors"), encodeSafetensors(entries, metadata));
  }
  const maskText = o.modelType === "llada" ? "<|mdm_mask|>" : "<|mask|>";
  await writeFile(join(o.dir, "config.json"), JSON.stringify(config, null, 2));
  await writeFile(
    join(o.dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: 3, eos_token_id: [ids.eos], pad_token_id: ids.pad, ...(o.modelType === "Dream" ? { mask_token_id: ids.mask } : {}) }, null, 2),
  );
  await writeFile(join(o.dir, "tokenizer.json"), JSON.stringify(tok));
  await writeFile(
    join(o.dir, "tokenizer_config.json"),
    JSON.stringify(
      {
        add_bos_token: false,
        bos_token: "<|bos|>",
        eos_token: "<|eos|>",
        pad_token: "<|pad|>",
        mask_token: maskText,
        model_max_length: 4096,
        tokenizer_class: "PreTrainedTokenizerFast",
        added_tokens_decoder: Object.fromEntries((tok["added_tokens"] as AddedToken[]).map((t) => [String(t.id), { content: t.content, special: true }])),
      },
      null,
      2,
    ),
  );
  return { dir: o.dir, config, tensorNames: entries.map((e) => e.name), vocabSize: vocab, ids };
}
