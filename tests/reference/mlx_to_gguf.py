"""Write a tiny mlx-community model folder as a float32 GGUF file the way llama.cpp's
convert_hf_to_gguf.py lays it out, for the engine's GGUF loader tests of the newer families.

Usage: mlx_to_gguf.py MODEL_DIR OUT.gguf

Supported model_type: mixtral (written as llama.cpp writes it: architecture "llama" with
experts, q/k rows permuted for interleaved rope), qwen3_moe (architecture "qwen3moe") and phi3
(fused attn_qkv, gate and up joined in ffn_up, rope.dimension_count for partial rotary,
LongRoPE's factors as rope_factors_long/short tensors and its scale as
rope.scaling.attn_factor) and gemma3_text (architecture "gemma3": its four norms per layer,
every norm weight stored with the 1 added that Gemma's (1 + w) applies, attention.sliding_window,
linear rope scaling; llama.cpp assumes the rest, so the model must follow its defaults) and
gpt_oss (architecture "gpt-oss": attn_sinks, post_attention_norm before the MLP, biases on the
attention, router and experts, YaRN as rope.scaling.*, attention.sliding_window, with even layers
sliding as llama.cpp assumes).

 * Metadata: general.architecture, <arch>.block_count, context_length, embedding_length,
   feed_forward_length, attention.head_count(_kv), attention.key_length/value_length,
   attention.layer_norm_rms_epsilon, rope.freq_base, expert_count, expert_used_count and
   (qwen3moe) expert_feed_forward_length; tokenizer.ggml.model "gpt2" with tokens, merges,
   token_type (3 for special added tokens, 4 for the others), pre, bos/eos ids and
   tokenizer.chat_template.
 * Tensors: token_embd, output_norm, output, blk.N.{attn_norm, attn_q, attn_k, attn_v,
   attn_output, attn_q_norm, attn_k_norm, ffn_norm, ffn_gate_inp, ffn_gate_exps, ffn_up_exps,
   ffn_down_exps, attn_sinks, post_attention_norm}: float32, except the MXFP4 tensors of an
   mxfp4 folder, written as ggml's MXFP4 blocks (the type of gpt-oss's experts in every
   llama.cpp GGUF); affine-quantized modules (gpt-oss's 8-bit router) are dequantized to float32.

The file is written beside OUT and renamed into place; an existing OUT newer than the folder's
config.json and this script is kept.
"""

import json
import os
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import mlx.core as mx
import numpy as np

from gguf_writer import write

ARCH = {"mixtral": "llama", "qwen3_moe": "qwen3moe", "phi3": "phi3", "gemma3_text": "gemma3", "gpt_oss": "gpt-oss"}
GPT_OSS_NAMES = {
    "post_attention_layernorm": "post_attention_norm",
    "self_attn.sinks": "attn_sinks",
    "mlp.router": "ffn_gate_inp",
    "mlp.experts.gate_proj": "ffn_gate_exps",
    "mlp.experts.up_proj": "ffn_up_exps",
    "mlp.experts.down_proj": "ffn_down_exps",
}
# Gemma's norms as llama.cpp names them (its ffn_norm is the one before the MLP).
GEMMA_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.qkv_proj": "attn_qkv",
    "mlp.gate_up_proj": "ffn_up",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.gate": "ffn_gate_inp",
    "block_sparse_moe.gate": "ffn_gate_inp",
    "mlp.switch_mlp.gate_proj": "ffn_gate_exps",
    "mlp.switch_mlp.up_proj": "ffn_up_exps",
    "mlp.switch_mlp.down_proj": "ffn_down_exps",
    "block_sparse_moe.switch_mlp.gate_proj": "ffn_gate_exps",
    "block_sparse_moe.switch_mlp.up_proj": "ffn_up_exps",
    "block_sparse_moe.switch_mlp.down_proj": "ffn_down_exps",
}


def gguf_name(name, arch):
    if name.endswith(".sinks"):
        name += ".weight"
    stem, suffix = name.rsplit(".", 1)
    if stem == "model.embed_tokens":
        return f"token_embd.{suffix}"
    if stem == "model.norm":
        return f"output_norm.{suffix}"
    if stem == "lm_head":
        return f"output.{suffix}"
    parts = stem.split(".", 3)  # model, layers, N, rest
    names = {"gemma3": {**LAYER_NAMES, **GEMMA_NAMES}, "gpt-oss": {**LAYER_NAMES, **GPT_OSS_NAMES}}.get(arch, LAYER_NAMES)
    return f"blk.{parts[2]}.{names[parts[3]]}.{suffix}"


def permute(w, heads):
    """llama.cpp's q/k row order for interleaved rope."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def tokenizer_metadata(model_dir, config):
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = dict(tok["model"]["vocab"])
    kinds = {}
    for a in tok["added_tokens"]:
        vocab[a["content"]] = a["id"]
        kinds[a["id"]] = 3 if a["special"] else 4
    n = max(vocab.values()) + 1
    tokens = [""] * n
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2" if config["model_type"].startswith("qwen") else "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": ("i32[]", [kinds.get(i, 1) for i in range(n)]),
        "tokenizer.chat_template": tok_cfg["chat_template"],
    }
    for key, name in (("bos", "bos_token"), ("eos", "eos_token")):
        if tok_cfg.get(name):
            meta[f"tokenizer.ggml.{key}_token_id"] = ("u32", vocab[tok_cfg[name]])
    return meta


def convert(model_dir, out):
    config = json.loads((model_dir / "config.json").read_text())
    quant = config.get("quantization") or {}
    if quant and quant.get("mode") != "mxfp4":
        sys.exit(f"{model_dir}: affine-quantized folders are not supported; use the f32 (or mxfp4) one")
    arch = ARCH[config["model_type"]]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    u32 = lambda v: ("u32", v)
    f32 = lambda v: ("f32", v)
    meta = {
        "general.architecture": arch,
        "general.name": model_dir.name,
        f"{arch}.block_count": u32(config["num_hidden_layers"]),
        f"{arch}.context_length": u32(config["max_position_embeddings"]),
        f"{arch}.embedding_length": u32(config["hidden_size"]),
        f"{arch}.feed_forward_length": u32(config["intermediate_size"]),
        f"{arch}.attention.head_count": u32(heads),
        f"{arch}.attention.head_count_kv": u32(kv),
        f"{arch}.attention.key_length": u32(head_dim),
        f"{arch}.attention.value_length": u32(head_dim),
        f"{arch}.attention.layer_norm_rms_epsilon": f32(config["rms_norm_eps"]),
        f"{arch}.rope.freq_base": f32(config["rope_theta"]),
        f"{arch}.vocab_size": u32(config["vocab_size"]),
    }
    if config["model_type"] == "gemma3_text":
        meta[f"{arch}.attention.sliding_window"] = u32(config["sliding_window"])
        scaling = config.get("rope_scaling") or {}
        if scaling.get("rope_type") == "linear":
            meta[f"{arch}.rope.scaling.type"] = "linear"
            meta[f"{arch}.rope.scaling.factor"] = f32(scaling["factor"])
    elif config["model_type"] == "phi3":
        rope_dim = int(head_dim * config.get("partial_rotary_factor", 1.0))
        meta[f"{arch}.rope.dimension_count"] = u32(rope_dim)
        scaling = config.get("rope_scaling") or {}
        if scaling.get("type") in ("longrope", "su"):
            original = config["original_max_position_embeddings"]
            factor = config["max_position_embeddings"] / original
            attn = 1.0 if factor <= 1.0 else (1 + np.log(factor) / np.log(original)) ** 0.5
            meta[f"{arch}.rope.scaling.original_context_length"] = u32(original)
            meta[f"{arch}.rope.scaling.attn_factor"] = f32(float(attn))
    elif config["model_type"] == "gpt_oss":
        meta[f"{arch}.expert_count"] = u32(config["num_local_experts"])
        meta[f"{arch}.expert_used_count"] = u32(config["num_experts_per_tok"])
        meta[f"{arch}.expert_feed_forward_length"] = u32(config["intermediate_size"])
        meta[f"{arch}.attention.sliding_window"] = u32(config["sliding_window"])
        scaling = config["rope_scaling"]
        meta[f"{arch}.rope.scaling.type"] = "yarn"
        meta[f"{arch}.rope.scaling.factor"] = f32(scaling["factor"])
        meta[f"{arch}.rope.scaling.original_context_length"] = u32(scaling["original_max_position_embeddings"])
    elif config["model_type"] == "mixtral":
        meta[f"{arch}.expert_count"] = u32(config["num_local_experts"])
        meta[f"{arch}.expert_used_count"] = u32(config["num_experts_per_tok"])
    else:
        meta[f"{arch}.expert_count"] = u32(config["num_experts"])
        meta[f"{arch}.expert_used_count"] = u32(config["num_experts_per_tok"])
        meta[f"{arch}.expert_feed_forward_length"] = u32(config["moe_intermediate_size"])
    meta.update(tokenizer_metadata(model_dir, config))

    weights = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        weights.update(mx.load(str(f)))
    tensors = {}
    for name, w in weights.items():
        if name.endswith((".scales", ".biases")):
            continue
        module = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and f"{module}.scales" in weights:
            # A module's own entry (gpt-oss's router) is affine unless it names its mode.
            spec = {"mode": "affine", **quant[module]} if module in quant else quant
            if spec["mode"] == "mxfp4":
                tensors[gguf_name(name, arch)] = (
                    "mxfp4", np.array(w), np.array(weights[f"{module}.scales"]))
                continue
            w = mx.dequantize(w, weights[f"{module}.scales"], weights.get(f"{module}.biases"),
                              group_size=spec["group_size"], bits=spec["bits"], mode=spec["mode"])
        w = np.array(w.astype(mx.float32))
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            w = permute(w, heads)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            w = permute(w, kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + 1.0
        tensors[gguf_name(name, arch)] = w
    scaling = config.get("rope_scaling") or {}
    if config["model_type"] == "phi3" and "long_factor" in scaling:
        tensors["rope_factors_long.weight"] = np.array(scaling["long_factor"], dtype=np.float32)
        tensors["rope_factors_short.weight"] = np.array(scaling["short_factor"], dtype=np.float32)
    write(out, tensors, meta)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    scripts = (Path(__file__), Path(__file__).with_name("gguf_writer.py"))
    newest = max([(model_dir / "config.json").stat().st_mtime] + [p.stat().st_mtime for p in scripts])
    if out.is_file() and out.stat().st_mtime >= newest:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    convert(model_dir, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
