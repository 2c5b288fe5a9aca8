"""Convert a llama-architecture GGUF (SmolLM2-135M-Instruct Q4_1) into an mlx-lm model folder.

Usage: gguf_to_mlx.py GGUF_PATH OUT_DIR

The result is the independent reference for the engine's own GGUF loader:
mlx_lm.load(OUT_DIR) must accept it and answer like the GGUF does.

 * Tensors come from mx.load(GGUF_PATH, return_metadata=True), which already
   gives quantized tensors as MLX affine triples (weight/scales/biases, group
   size 32): Q4_0/Q4_1 -> 4 bits, Q8_0 -> 8 bits. They are copied as they are
   (scales and biases stay float16 as MLX produced them; norms float32), renamed
   to Hugging Face llama names.
 * llama.cpp's converter permutes the rows of attn_q / attn_k (per head, from
   the "two halves" rotary layout to the interleaved one). That is undone here,
   on weight, scales and biases rows alike, so mlx-lm's default
   (non-traditional) rope applies.
 * config.json: model_type llama, hyper-parameters from the llama.* metadata,
   quantization {"group_size": 32, "bits": 4, "mode": "affine"} plus one
   per-module entry for every quantized module whose bits differ (here
   "model.embed_tokens": 8 bits); quantization_config mirrors it.
 * tokenizer.json is rebuilt with the `tokenizers` package from
   tokenizer.ggml.tokens/merges: byte-level BPE, pre-tokenizer
   Digits(individual) + ByteLevel(GPT-2 regex, no prefix space), ByteLevel
   decoder; token_type 3 (control) become special added tokens, 4
   (user-defined) non-special added tokens. tokenizer_config.json carries the
   GGUF chat template and the bos/eos/pad/unk tokens named by the metadata ids.

Idempotent: OUT_DIR/.complete records this script's hash and the GGUF's name,
size and mtime; when it matches nothing is done. The folder is built beside
OUT_DIR, checked (tokenizer round-trips, control tokens, a greedy answer to
"What is the capital of France?") and renamed into place.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import hashlib
import json
import re
import sys
from pathlib import Path

from publish import build_once

GROUP_SIZE = 32  # every GGUF block format MLX loads as affine triples uses 32

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def scalar(meta, key, default=None):
    v = meta.get(key, default)
    if hasattr(v, "item"):
        v = v.item()
    return v


def unpermute_rows(x, n_heads):
    """Inverse of llama.cpp's convert_hf_to_gguf `permute`.

    llama.cpp viewed the rows of each head as (2, head_dim/2) and stored them
    transposed, (head_dim/2, 2). Here the rows are viewed as (head_dim/2, 2)
    and transposed back. Works on any tensor whose first axis is the output
    row (packed weight, scales, biases).
    """
    rows = x.shape[0]
    head_dim = rows // n_heads
    return x.reshape(n_heads, head_dim // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def hf_name(gguf_name):
    """'blk.3.attn_q.scales' -> 'model.layers.3.self_attn.q_proj.scales'."""
    m = re.fullmatch(r"blk\.(\d+)\.([a-z_]+)\.(weight|scales|biases|bias)", gguf_name)
    if m:
        return f"model.layers.{m[1]}.{LAYER_NAMES[m[2]]}.{m[3]}"
    base, suffix = gguf_name.rsplit(".", 1)
    return f"{GLOBAL_NAMES[base]}.{suffix}"


def convert_weights(tensors, n_head, n_head_kv):
    out = {}
    for name, t in tensors.items():
        if name.endswith(("attn_q.weight", "attn_q.scales", "attn_q.biases")):
            t = unpermute_rows(t, n_head)
        elif name.endswith(("attn_k.weight", "attn_k.scales", "attn_k.biases")):
            t = unpermute_rows(t, n_head_kv)
        out[hf_name(name)] = t
    return out


def quantization_config(weights):
    """mlx-lm quantization dict: 4-bit default plus per-module overrides."""
    default = {"group_size": GROUP_SIZE, "bits": 4, "mode": "affine"}
    q = dict(default)
    for name in sorted(weights):
        if not name.endswith(".scales"):
            continue
        module = name[: -len(".scales")]
        packed = weights[f"{module}.weight"].shape[-1]  # uint32 words per row
        groups = weights[name].shape[-1]
        bits = packed * 32 // (groups * GROUP_SIZE)
        if bits != default["bits"]:
            q[module] = {"group_size": GROUP_SIZE, "bits": bits, "mode": "affine"}
    return q


def build_config(meta, weights):
    arch = scalar(meta, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama GGUFs are supported, got {arch!r}")

    def p(key):
        return scalar(meta, f"llama.{key}")

    n_embd = p("embedding_length")
    n_head = p("attention.head_count")
    vocab = p("vocab_size") or len(meta["tokenizer.ggml.tokens"])
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": n_embd,
        "num_hidden_layers": p("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": p("attention.head_count_kv") or n_head,
        "intermediate_size": p("feed_forward_length"),
        "rms_norm_eps": float(f"{p('attention.layer_norm_rms_epsilon'):.6g}"),
        "rope_theta": float(f"{p('rope.freq_base') or 10000.0:.6g}"),
        "rope_scaling": None,
        "max_position_embeddings": p("context_length"),
        "vocab_size": vocab,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "bos_token_id": scalar(meta, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": scalar(meta, "tokenizer.ggml.eos_token_id"),
    }
    rope_dim = p("rope.dimension_count")
    if rope_dim and rope_dim != n_embd // n_head:
        config["head_dim"] = rope_dim
    q = quantization_config(weights)
    config["quantization"] = q
    config["quantization_config"] = q
    return dict(sorted(config.items()))


def build_tokenizer(meta):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if scalar(meta, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    pre = scalar(meta, "tokenizer.ggml.pre")
    if pre != "smollm":
        raise ValueError(f"pre-tokenizer {pre!r} not handled (only 'smollm')")
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"].tolist()
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    # llama.cpp's 'smollm' pre-tokenizer: every digit alone, then the GPT-2 regex.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    )
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == 4]
    )
    if tok.get_vocab_size() != len(tokens):
        raise RuntimeError("added tokens changed the vocabulary size")
    return tok


def tokenizer_config(meta, tok):
    tokens = meta["tokenizer.ggml.tokens"]

    def named(key):
        i = scalar(meta, f"tokenizer.ggml.{key}")
        return None if i is None else tokens[i]

    added = {}
    for entry in json.loads(tok.to_str())["added_tokens"]:
        added[str(entry["id"])] = {
            k: entry[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
        }
    return {
        "add_bos_token": bool(scalar(meta, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(scalar(meta, "tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": named("bos_token_id"),
        "chat_template": scalar(meta, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "eos_token": named("eos_token_id"),
        "model_max_length": scalar(meta, "llama.context_length"),
        "pad_token": named("padding_token_id"),
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": named("unknown_token_id"),
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def convert(gguf_path, out):
    import mlx.core as mx

    tensors, meta = mx.load(str(gguf_path), return_metadata=True)
    n_head = scalar(meta, "llama.attention.head_count")
    n_head_kv = scalar(meta, "llama.attention.head_count_kv") or n_head
    weights = convert_weights(tensors, n_head, n_head_kv)
    config = build_config(meta, weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    index = {
        "metadata": {"total_size": int(sum(v.nbytes for v in weights.values()))},
        "weight_map": {k: "model.safetensors" for k in sorted(weights)},
    }
    write_json(out / "model.safetensors.index.json", index)
    write_json(out / "config.json", config)
    write_json(
        out / "generation_config.json",
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
    )
    tok = build_tokenizer(meta)
    tok.save(str(out / "tokenizer.json"))
    write_json(out / "tokenizer_config.json", tokenizer_config(meta, tok))
    return meta


# Texts whose encode -> decode must give them back unchanged.
ROUND_TRIP = [
    "Hello world",
    "  leading spaces and trailing  ",
    "line one\nline two\n\n\tindented with a tab\r\nwindows line",
    "Café naïve résumé Zürich façade jalapeño ÀÉÎÕÜ",
    "你好，世界！日本語のテキスト。한국어 텍스트.",
    "Emoji: 😀🚀🌍 ❤️ 👍🏽 👨‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(12))",
    "Digits 0123456789 and 3.14159, -42, 1e10, 2024-06-01",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
]
# (text, expected token strings) checks of the pre-tokenizer.
EXPECTED_TOKENS = [
    ("12345", ["1", "2", "3", "4", "5"]),
    ("Hello world", ["Hello", "Ġworld"]),
    ("<|im_start|>user", ["<|im_start|>", "user"]),
]


def check(out, meta):
    """Tokenizer round-trips and control tokens, then a short greedy answer."""
    from mlx_lm import generate, load
    from tokenizers import Tokenizer

    model, tokenizer = load(str(out))
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in ROUND_TRIP:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if ids != raw.encode(text, add_special_tokens=False).ids:
            raise RuntimeError(f"transformers and tokenizer.json disagree on {text!r}")
        back = tokenizer.decode(ids)
        if back != text:
            raise RuntimeError(f"round-trip failed: {text!r} -> {ids} -> {back!r}")
    for text, expected in EXPECTED_TOKENS:
        got = tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))
        if got != expected:
            raise RuntimeError(f"{text!r} tokenized as {got}, expected {expected}")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"].tolist()
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 3 and tokenizer.encode(t, add_special_tokens=False) != [i]:
            raise RuntimeError(f"control token {t!r} does not encode to [{i}]")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    answer = generate(model, tokenizer, prompt, max_tokens=10)
    print(f"  greedy answer: {answer!r}", flush=True)
    if "Paris" not in answer:
        raise RuntimeError(f"unexpected answer {answer!r}: q/k un-permute or weights wrong?")


def stamp(gguf_path):
    st = gguf_path.stat()
    h = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return {"script_sha256": h, "gguf": gguf_path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gguf_path = Path(sys.argv[1]).resolve()
    out_dir = Path(sys.argv[2]).resolve()

    def build(tmp):
        check(tmp, convert(gguf_path, tmp))

    if build_once(out_dir, stamp(gguf_path), build):
        print(f"converted {gguf_path.name} to {out_dir}")


if __name__ == "__main__":
    main()
