"""Make a random-weight model of a named shape with mlx-lm, so benchmarks need no download.

Usage: make_bench_model.py SHAPE BASE OUT

SHAPE is one of the keys of SHAPES below. BASE is an mlx-lm folder whose tokenizer files are
reused (the SmolLM2 folder the benchmarks convert from the embedded GGUF); the tokenizer's BPE
vocabulary is padded with placeholder tokens up to the shape's vocabulary size, so every id the
model can produce decodes. The weights are mlx-lm's own random initialization (seeded), quantized
by mlx-lm to 4 bits, group size 64, with bfloat16 scales and activations, and written to OUT in
the mlx-community layout. Layers are built and quantized one at a time, so an 8B shape needs
about 6 GB of memory, not 16.

Idempotent: OUT/.complete records the shape; a complete folder is left alone.
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import mlx.core as mx
import mlx.nn as nn

SHAPES = {
    # Llama 3 8B: grouped-query attention (8 KV heads), 128K vocabulary, untied head.
    "llama3-8b": dict(
        model_type="llama", hidden_size=4096, num_hidden_layers=32, intermediate_size=14336,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=8192, tie_word_embeddings=False,
    ),
    # Llama 3.2 1B: Llama 3's attention at 2048 wide, 16 layers, tied embeddings.
    "llama3.2-1b": dict(
        model_type="llama", hidden_size=2048, num_hidden_layers=16, intermediate_size=8192,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=8192, tie_word_embeddings=True,
    ),
    # Qwen3 0.6B: q/k norms, head_dim 128 with 16 heads of a 1024-wide model, tied embeddings.
    "qwen3-0.6b": dict(
        model_type="qwen3", hidden_size=1024, num_hidden_layers=28, intermediate_size=3072,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=40960,
        tie_word_embeddings=True,
    ),
    # SmolLM2 135M: the default model's shape.
    "smollm2-135m": dict(
        model_type="llama", hidden_size=576, num_hidden_layers=30, intermediate_size=1536,
        num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5,
        rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True,
    ),
}
GROUP, BITS = 64, 4


def pad_tokenizer(base: Path, out: Path, vocab: int):
    for name in ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]:
        if (base / name).exists():
            shutil.copy(base / name, out / name)
    tok = json.loads((base / "tokenizer.json").read_text())
    words = tok["model"]["vocab"]
    used = set(words.values()) | {t["id"] for t in tok.get("added_tokens", [])}
    for i in range(vocab):
        if i not in used:
            words[f"<x{i}>"] = i
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))


def build(shape: str, base: Path, out: Path):
    from mlx_lm.utils import _get_classes, save_config, save_model

    cfg = dict(SHAPES[shape])
    cfg["quantization"] = {"group_size": GROUP, "bits": BITS}
    model_class, args_class = _get_classes(cfg)
    mx.random.seed(0)
    model = model_class(args_class.from_dict(cfg))
    model.set_dtype(mx.bfloat16)
    # Quantize and materialize one block at a time to bound memory.
    for layer in model.layers:
        nn.quantize(layer, group_size=GROUP, bits=BITS)
        mx.eval(layer.parameters())
    nn.quantize(model, group_size=GROUP, bits=BITS)
    mx.eval(model.parameters())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(tmp, model, donate_model=True)
    save_config(cfg, config_path=tmp / "config.json")
    pad_tokenizer(base, tmp, cfg["vocab_size"])
    (tmp / ".complete").write_text(shape)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SHAPES:
        sys.exit(f"usage: make_bench_model.py SHAPE BASE OUT  (SHAPE: {', '.join(SHAPES)})")
    shape, base, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    done = out / ".complete"
    if done.exists() and done.read_text() == shape:
        return
    build(shape, base, out)
    print(f"make_bench_model: {shape} written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
