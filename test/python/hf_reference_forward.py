#!/usr/bin/env python3
"""Test-only reference forward of a Hugging Face diffusion-LM checkpoint, in PyTorch.

Independent of the rlmesh graph builder: it reads the checkpoint's own files (config.json,
*.safetensors with its own small numpy reader, sharded index included) and runs the family's
forward as its public modeling code does:

- Dream (modeling_dream.py, Qwen2 blocks): RMSNorm, RoPE (rotate_half, rope_theta), GQA via
  repeat_kv, bias on q/k/v, SwiGLU (gate/up/down), bidirectional attention, lm_head or tied.
- llada (modeling_llada.py, LLaDALlamaBlock): RMSNorm, RoPE, n_kv_heads, optional q/k/v bias,
  ff_out(silu(ff_proj(x)) * up_proj(x)), bidirectional attention, transformer.ff_out or tied wte.

Raw logits (no shift: Dream's shift is the sampler's job). One sequence at positions 0..T-1.

usage: hf_reference_forward.py CHECKPOINT_DIR IDS OUT.f32 [CHECKPOINT_DIR IDS OUT.f32 ...]
  IDS: comma-separated token ids; OUT.f32 receives float32 little-endian logits [T, V].
  CHECKPOINT_DIR prefixed "float16:" rounds every weight to float16 (torch's .half(), round to
  nearest even) and computes in float32: what `import-hf --dtype float16` stores and runs.
  Several triples run in one process (torch's import is most of a small run's time).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        raw = data[begin:end]
        dtype = meta["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: unsupported dtype {dtype} for {name}")
        out[name] = torch.from_numpy(arr.copy().reshape(meta["shape"]))
    return out


def read_checkpoint(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(read_safetensors(os.path.join(d, name)))
    return tensors


def rms_norm(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(positions, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def attention(x, p, n_heads, n_kv, head_dim, cos, sin):
    T = x.shape[0]
    q = torch.nn.functional.linear(x, p["q"], p.get("bq"))
    k = torch.nn.functional.linear(x, p["k"], p.get("bk"))
    v = torch.nn.functional.linear(x, p["v"], p.get("bv"))
    q = q.view(T, n_heads, head_dim).transpose(0, 1)
    k = k.view(T, n_kv, head_dim).transpose(0, 1)
    v = v.view(T, n_kv, head_dim).transpose(0, 1)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    groups = n_heads // n_kv
    # repeat_kv: [kv, T, d] -> [kv * groups, T, d], query head h reads kv head h // groups
    k = k[:, None].expand(n_kv, groups, T, head_dim).reshape(n_heads, T, head_dim)
    v = v[:, None].expand(n_kv, groups, T, head_dim).reshape(n_heads, T, head_dim)
    scores = (q @ k.transpose(1, 2)) / math.sqrt(head_dim)  # bidirectional: no causal mask
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).transpose(0, 1).reshape(T, n_heads * head_dim)
    return torch.nn.functional.linear(out, p["o"])


def dream_forward(cfg, w, ids):
    d = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or d // n_heads
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_cos_sin(torch.arange(len(ids)), head_dim, cfg["rope_theta"])
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}"
        a = f"{pre}.self_attn"
        p = {
            "q": w[f"{a}.q_proj.weight"], "bq": w[f"{a}.q_proj.bias"],
            "k": w[f"{a}.k_proj.weight"], "bk": w[f"{a}.k_proj.bias"],
            "v": w[f"{a}.v_proj.weight"], "bv": w[f"{a}.v_proj.bias"],
            "o": w[f"{a}.o_proj.weight"],
        }
        x = x + attention(rms_norm(x, w[f"{pre}.input_layernorm.weight"], eps), p, n_heads, n_kv, head_dim, cos, sin)
        h = rms_norm(x, w[f"{pre}.post_attention_layernorm.weight"], eps)
        m = f"{pre}.mlp"
        gate = torch.nn.functional.silu(torch.nn.functional.linear(h, w[f"{m}.gate_proj.weight"]))
        x = x + torch.nn.functional.linear(gate * torch.nn.functional.linear(h, w[f"{m}.up_proj.weight"]), w[f"{m}.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return torch.nn.functional.linear(x, head)


def llada_forward(cfg, w, ids):
    d = cfg["d_model"]
    n_heads = cfg["n_heads"]
    n_kv = 1 if cfg.get("multi_query_attention") else (cfg.get("n_kv_heads") or n_heads)
    head_dim = d // n_heads
    eps = cfg["rms_norm_eps"]
    qkv_bias = cfg.get("include_qkv_bias", False)
    cos, sin = rope_cos_sin(torch.arange(len(ids)), head_dim, cfg["rope_theta"])
    t = "model.transformer"
    x = w[f"{t}.wte.weight"][torch.tensor(ids)]
    for i in range(cfg["n_layers"]):
        b = f"{t}.blocks.{i}"
        p = {"q": w[f"{b}.q_proj.weight"], "k": w[f"{b}.k_proj.weight"], "v": w[f"{b}.v_proj.weight"], "o": w[f"{b}.attn_out.weight"]}
        if qkv_bias:
            p.update(bq=w[f"{b}.q_proj.bias"], bk=w[f"{b}.k_proj.bias"], bv=w[f"{b}.v_proj.bias"])
        x = x + attention(rms_norm(x, w[f"{b}.attn_norm.weight"], eps), p, n_heads, n_kv, head_dim, cos, sin)
        h = rms_norm(x, w[f"{b}.ff_norm.weight"], eps)
        act = torch.nn.functional.silu(torch.nn.functional.linear(h, w[f"{b}.ff_proj.weight"]))
        x = x + torch.nn.functional.linear(act * torch.nn.functional.linear(h, w[f"{b}.up_proj.weight"]), w[f"{b}.ff_out.weight"])
    x = rms_norm(x, w[f"{t}.ln_f.weight"], eps)
    head = w[f"{t}.wte.weight"] if cfg.get("weight_tying", False) else w[f"{t}.ff_out.weight"]
    return torch.nn.functional.linear(x, head)


def run_one(src, ids_arg, out):
    half = src.startswith("float16:")
    if half:
        src = src[len("float16:") :]
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    ids = [int(s) for s in ids_arg.split(",")]
    weights = read_checkpoint(src)
    if half:
        weights = {k: v.half().float() for k, v in weights.items()}
    forward = {"Dream": dream_forward, "llada": llada_forward}.get(cfg["model_type"])
    if forward is None:
        raise SystemExit(f"config.json: model_type {cfg['model_type']!r} has no reference forward here")
    with torch.no_grad():
        logits = forward(cfg, weights, ids)
    logits.numpy().astype("<f4").tofile(out)
    print(json.dumps({"checkpoint": src, "float16_weights": half, "shape": list(logits.shape), "torch": torch.__version__}))


def main():
    args = sys.argv[1:]
    if len(args) == 0 or len(args) % 3 != 0:
        raise SystemExit(__doc__)
    for i in range(0, len(args), 3):
        run_one(*args[i : i + 3])


if __name__ == "__main__":
    main()
