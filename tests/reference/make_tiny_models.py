"""Generate tiny random-weight models for the Rust test-suite, using mlx-lm itself.

Usage: make_tiny_models.py OUT_DIR

Writes one folder per (architecture, variant) in the mlx-community layout:

    OUT_DIR/<name>-f32/   unquantized, every weight float32
    OUT_DIR/<name>-q4/    mlx-lm affine quantization, 4 bits, group_size 32
                          (embeddings and lm_head included; norms stay float32)
    OUT_DIR/<name>-<mode>/ for the models that list them, another of MLX's
                          quantization modes (gpt_oss-mxfp4)

for name in llama, llama3, mistral, qwen2, qwen3, qwen3_moe, mixtral, phi3,
gemma3, gpt_oss (see MODELS below), and gemma3mm-q4: gemma3-q4 wrapped as Gemma 3's
multimodal checkpoint. Each folder
holds config.json, model*.safetensors + model.safetensors.index.json,
tokenizer.json (a byte-level BPE trained here, deterministically),
tokenizer_config.json (chat template, special tokens) and, for most models,
generation_config.json. The weights are seeded per model, so regenerating gives
byte-identical files.

Idempotent: if OUT_DIR/.complete records this script's version (and the hash of
this file and of templates/*.jinja) nothing is done. Otherwise everything is
built in a temporary folder beside OUT_DIR, each model is loaded back with
mlx_lm.load and run, and the folder is renamed into place. A lock file beside
OUT_DIR serializes concurrent invocations.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import contextlib
import copy
import hashlib
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from publish import build_once

SCRIPT_VERSION = 1
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

# Training text for the tiny BPE. Its only job is to give a stable vocabulary
# with some multi-byte merges (English words, a little CJK, accents, emoji).
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog was not amused, "
    "and the fox ran back into the forest before the farmer could see it.",
    "Once upon a time there was a small robot that wanted to learn how to "
    "paint. Every morning it looked at the sky, and every evening it tried "
    "to paint the colours it had seen: blue, grey, orange and deep red.",
    "What is the capital of France? The capital of France is Paris. What is "
    "the capital of Japan? The capital of Japan is Tokyo.",
    "Hello! How are you today? I am fine, thank you. Would you like some "
    "tea or coffee? Yes, please, a cup of tea with milk.",
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, 2))\n",
    "fn main() {\n    let x = 42;\n    println!(\"{}\", x);\n}\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159 -7 +12 50%",
    "Café, naïve, résumé, façade, jalapeño, Zürich, smörgåsbord, coöperate.",
    "Tabs\tand\ttabs, new\nlines\n\nand   several   spaces.",
    "你好，世界！今天天气很好。我们去公园散步吧。你好，你好，世界。",
    "こんにちは世界。今日はいい天気ですね。ありがとうございます。",
    "안녕하세요 세계. 감사합니다.",
    "Emoji time: 😀 😃 😄 🚀 🌍 ❤️ 👍 🎉 — done. 😀🚀🌍",
    "JSON: {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}",
    "The assistant answered the question, then the user asked another "
    "question, and the assistant answered again. Questions and answers.",
]

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_EXTRA_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(style):
    """Train the tiny byte-level BPE.

    style "chatml": the three ChatML special tokens get ids 0, 1, 2 and the
                    learned vocabulary follows (480 ids in all), as in SmolLM.
    style "qwen":   the learned vocabulary comes first (450 ids), then the three
                    special tokens and four non-special added tokens
                    (<tool_call> </tool_call> <think> </think>), as in Qwen.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if style == "chatml":
        # GPT-2 style: ByteLevel with its built-in GPT-2 split regex.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        # Exactly what real Qwen2/Qwen3 tokenizer.json files hold (and what
        # transformers' Qwen2Tokenizer rebuilds for model_type qwen2 whatever
        # tokenizer.json says): NFC, then the Qwen split regex, then ByteLevel.
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    if style == "chatml":
        vocab_size, specials = 480, CHATML_SPECIALS
    else:
        vocab_size, specials = 450, []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"BPE training gave {tok.get_vocab_size()} ids, wanted {vocab_size}")
    if style == "qwen":
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in CHATML_SPECIALS])
        tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in QWEN_EXTRA_TOKENS])
    return tok


def with_bos_post_processor(tok, bos):
    """A copy of `tok` whose post-processor prepends `bos` when add_special_tokens=True."""
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_str(tok.to_str())
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )
    return tok


def added_tokens_decoder(tok):
    out = {}
    for entry in json.loads(tok.to_str())["added_tokens"]:
        out[str(entry["id"])] = {
            k: entry[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
        }
    return out


# ---------------------------------------------------------------------------
# Model specifications
# ---------------------------------------------------------------------------

COMMON = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=512,
    hidden_act="silu",
    torch_dtype="float32",
)

# tok: which tokenizer; bos/eos: token strings for tokenizer_config.json;
# gen_eos: eos_token_id in generation_config.json (None = no such file);
# add_bos: the tokenizer prepends the BOS token on encode(add_special_tokens=True);
# shards: number of safetensors files.
MODELS = {
    "llama": dict(
        seed=1001,
        tok="chatml",
        template="chatml.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos="<|im_end|>",
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            rope_scaling=None,
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=True,
        ),
    ),
    "llama3": dict(
        seed=1002,
        tok="chatml",
        template="chatml.jinja",
        bos="<|endoftext|>",
        eos="<|im_end|>",
        gen_eos=["<|im_end|>", "<|endoftext|>"],
        add_bos=True,
        shards=2,
        config=dict(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
        ),
    ),
    "mistral": dict(
        seed=1003,
        tok="chatml",
        template="chatml.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=None,
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["MistralForCausalLM"],
            model_type="mistral",
            rms_norm_eps=1e-5,
            rope_theta=1000000.0,
            sliding_window=None,
            tie_word_embeddings=False,
        ),
    ),
    "qwen2": dict(
        seed=1004,
        tok="qwen",
        template="qwen2.5.jinja",
        bos=None,
        eos="<|im_end|>",
        gen_eos=["<|im_end|>", "<|endoftext|>"],
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["Qwen2ForCausalLM"],
            model_type="qwen2",
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_scaling=None,
            sliding_window=None,
            use_sliding_window=False,
            tie_word_embeddings=True,
        ),
    ),
    "qwen3": dict(
        seed=1005,
        tok="qwen",
        template="qwen2.5.jinja",
        bos=None,
        eos="<|im_end|>",
        gen_eos="<|im_end|>",
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["Qwen3ForCausalLM"],
            model_type="qwen3",
            head_dim=32,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_scaling=None,
            attention_bias=False,
            tie_word_embeddings=True,
        ),
    ),
    # Four experts, two per token; layer 1 keeps a dense MLP (mlp_only_layers), so a model
    # mixing sparse and dense layers is covered. mlx-lm quantizes the router to 8 bits in
    # groups of 64 (its quant_predicate), a per-module override in config.json.
    "qwen3_moe": dict(
        seed=1006,
        tok="qwen",
        template="qwen2.5.jinja",
        bos=None,
        eos="<|im_end|>",
        gen_eos="<|im_end|>",
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["Qwen3MoeForCausalLM"],
            model_type="qwen3_moe",
            head_dim=32,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_scaling=None,
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            moe_intermediate_size=32,
            norm_topk_prob=True,
            tie_word_embeddings=False,
        ),
    ),
    "mixtral": dict(
        seed=1007,
        tok="chatml",
        template="chatml.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=None,
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["MixtralForCausalLM"],
            model_type="mixtral",
            rms_norm_eps=1e-5,
            rope_theta=1000000.0,
            num_local_experts=4,
            num_experts_per_tok=2,
            tie_word_embeddings=False,
        ),
    ),
    # Phi-4-mini's shape: partial rotary (half of each 16-wide head), LongRoPE with its
    # context extended 8x (so the rotated features are scaled), tied embeddings.
    "phi3": dict(
        seed=1008,
        tok="chatml",
        template="phi4-mini.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=["<|im_end|>", "<|endoftext|>"],
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["Phi3ForCausalLM"],
            model_type="phi3",
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            partial_rotary_factor=0.5,
            original_max_position_embeddings=64,
            rope_scaling={
                "type": "longrope",
                "long_factor": [1.0, 1.5, 3.0, 6.0],
                "short_factor": [1.0, 1.0, 1.2, 1.5],
            },
            tie_word_embeddings=True,
        ),
    ),
    # Layer 0 slides over a 4-token window (base 10000), layer 1 is global (base 1e6, linear
    # scaling 2); the tests' prompts run past the window. hidden 96 makes the embedding scale
    # sqrt(96) round to bfloat16, and query_pre_attn_scalar differs from head_dim.
    "gemma3": dict(
        seed=1009,
        tok="chatml",
        template="gemma3.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=None,
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["Gemma3ForCausalLM"],
            model_type="gemma3_text",
            hidden_size=96,
            head_dim=16,
            query_pre_attn_scalar=24,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_local_base_freq=10000.0,
            rope_scaling={"rope_type": "linear", "factor": 2.0},
            sliding_window=4,
            sliding_window_pattern=2,
            hidden_activation="gelu_pytorch_tanh",
        ),
    ),
    # Gemma 3 with the settings llama.cpp assumes when it reads GGUF (every sixth layer global,
    # the score scale 1/sqrt(head_dim), local rope base 10000), for the GGUF test; float32 only.
    "gemma3_6l": dict(
        seed=1011,
        tok="chatml",
        template="gemma3.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=None,
        add_bos=False,
        shards=1,
        quantized=False,
        config=dict(
            architectures=["Gemma3ForCausalLM"],
            model_type="gemma3_text",
            num_hidden_layers=6,
            head_dim=16,
            query_pre_attn_scalar=16,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_local_base_freq=10000.0,
            rope_scaling={"rope_type": "linear", "factor": 2.0},
            sliding_window=4,
            sliding_window_pattern=6,
            hidden_activation="gelu_pytorch_tanh",
        ),
    ),
    # Sliding (4-token window) then full attention, both with sinks and biases; four experts
    # with biases and the clamped SwiGLU, two per token; YaRN with the context extended 32x.
    "gpt_oss": dict(
        seed=1010,
        # mlx-community's gpt-oss checkpoints are MXFP4.
        modes=["mxfp4"],
        tok="chatml",
        template="chatml.jinja",
        bos="<|im_start|>",
        eos="<|im_end|>",
        gen_eos=None,
        add_bos=False,
        shards=1,
        config=dict(
            architectures=["GptOssForCausalLM"],
            model_type="gpt_oss",
            head_dim=16,
            intermediate_size=64,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_theta=150000.0,
            rope_scaling={
                "rope_type": "yarn",
                "factor": 32.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "original_max_position_embeddings": 64,
            },
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention"],
            swiglu_limit=7.0,
            attention_bias=True,
            tie_word_embeddings=False,
        ),
    ),
}

# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def random_weights(model, seed):
    """Seeded float32 values for every parameter of an mlx-lm model.

    Each tensor gets its own generator keyed by (seed, crc32(name)), so the
    values do not depend on iteration order. Scales: linear weights
    N(0, 1/fan_in); embeddings and lm_head N(0, 0.4^2), which gives logits with
    a standard deviation of a few units; norm weights 1 + N(0, 0.1^2);
    attention biases N(0, 0.2^2). The final norm is N(0, 1), random signs
    included: with tied embeddings a positive final norm makes
    logit(current token) ~ |e|^2 win, and greedy decoding would just repeat
    the last token; random signs decorrelate that.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten

    out = {}
    for name, p in tree_flatten(model.parameters()):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shape = tuple(p.shape)
        if name == "model.norm.weight":
            v = rng.standard_normal(shape)
        elif "norm" in name:
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.2 * rng.standard_normal(shape)
        elif "embed_tokens" in name or name.startswith("lm_head"):
            v = 0.4 * rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(shape[-1])
        out[name] = mx.array(v.astype(np.float32))
    return out


def save_weights(path, weights, shards):
    """Write safetensors file(s) and model.safetensors.index.json like mlx-lm/HF do."""
    import mlx.core as mx

    names = sorted(weights)
    if shards == 1:
        groups = [names]
        files = ["model.safetensors"]
    else:
        # Split at a layer boundary: embeddings + layer 0 first, the rest after.
        first = [n for n in names if n.startswith("model.embed_tokens") or n.startswith("model.layers.0.")]
        rest = [n for n in names if n not in first]
        groups = [first, rest]
        files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    index = {
        "metadata": {"total_size": int(sum(weights[n].nbytes for n in names))},
        "weight_map": {},
    }
    for group, fname in zip(groups, files):
        mx.save_safetensors(str(path / fname), {n: weights[n] for n in group}, metadata={"format": "mlx"})
        for n in group:
            index["weight_map"][n] = fname
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    with open(path / "model.safetensors.index.json", "w") as f:
        json.dump(index, f, indent=4)


# ---------------------------------------------------------------------------
# One model folder
# ---------------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_tokenizer_files(path, spec, tok):
    tok.save(str(path / "tokenizer.json"))
    template = (TEMPLATES / spec["template"]).read_text(encoding="utf-8")
    cfg = {
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_tokens_decoder(tok),
        "bos_token": spec["bos"],
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": spec["eos"],
        "errors": "replace",
        "model_max_length": COMMON["max_position_embeddings"],
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    write_json(path / "tokenizer_config.json", cfg)


def build_model(path, spec, tok, quantize):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes, quantize_model, save_config

    vocab = tok.get_vocab_size()
    tid = tok.token_to_id
    config = dict(COMMON)
    config.update(copy.deepcopy(spec["config"]))
    config["vocab_size"] = vocab
    if spec["bos"]:
        config["bos_token_id"] = tid(spec["bos"])
    config["eos_token_id"] = tid(spec["eos"])

    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    model.load_weights(list(random_weights(model, spec["seed"]).items()), strict=True)
    mx.eval(model.parameters())
    if quantize:
        mode = quantize if isinstance(quantize, str) else "affine"
        with contextlib.redirect_stdout(sys.stderr):  # it prints an [INFO] line
            model, config = quantize_model(model, config, group_size=32, bits=4, mode=mode)

    path.mkdir(parents=True)
    save_weights(path, dict(tree_flatten(model.parameters())), spec["shards"])
    save_config(config, path / "config.json")  # sorts keys, mirrors quantization -> quantization_config
    write_tokenizer_files(path, spec, tok)
    if spec["gen_eos"] is not None:
        eos = spec["gen_eos"]
        eos = [tid(e) for e in eos] if isinstance(eos, list) else tid(eos)
        gen = {"bos_token_id": config.get("bos_token_id"), "eos_token_id": eos, "do_sample": False}
        gen = {k: v for k, v in gen.items() if v is not None}
        write_json(path / "generation_config.json", gen)


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


VERIFY_TEXTS = [
    "Hello world! The capital of France is Paris. 你好 😀",
    "  two  spaces,\ttab\nnewline\n\n123456 it's DON'T café <|im_start|>user<tool_call>x</think>",
]


def verify(path):
    """Load with mlx_lm.load, run a forward pass, check the logits are usable,
    and check transformers' tokenizer agrees with tokenizer.json itself."""
    import mlx.core as mx
    from mlx_lm import load
    from tokenizers import Tokenizer

    model, tokenizer = load(str(path))
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    for text in VERIFY_TEXTS:
        for special in (True, False):
            a = tokenizer.encode(text, add_special_tokens=special)
            if a != raw.encode(text, add_special_tokens=special).ids:
                raise RuntimeError(f"{path.name}: transformers and tokenizer.json disagree on {text!r}")
        if tokenizer.decode(a) != text:
            raise RuntimeError(f"{path.name}: tokenizer does not round-trip {text!r}")
    ids = tokenizer.encode(VERIFY_TEXTS[0], add_special_tokens=False)
    logits = model(mx.array(ids)[None])[0].astype(mx.float32)
    arr = np.array(logits)
    if not np.isfinite(arr).all():
        raise RuntimeError(f"{path.name}: non-finite logits")
    std = float(arr.std())
    n_argmax = len(set(arr.argmax(-1).tolist()))
    if not (0.5 < std < 20.0) or n_argmax < len(ids) // 3:
        raise RuntimeError(f"{path.name}: degenerate logits (std {std:.3f}, {n_argmax} distinct argmax)")
    eos = sorted(tokenizer.eos_token_ids)
    print(f"  {path.name}: vocab {arr.shape[1]}, logit std {std:.2f}, "
          f"{n_argmax}/{len(ids)} distinct argmax, eos {eos}", flush=True)
    return arr


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def fingerprint():
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    for p in sorted(TEMPLATES.glob("*.jinja")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return {"version": SCRIPT_VERSION, "sha256": h.hexdigest()}


def generate(tmp):
    chatml = train_tokenizer("chatml")
    qwen = train_tokenizer("qwen")
    for name, spec in MODELS.items():
        tok = chatml if spec["tok"] == "chatml" else qwen
        if spec["add_bos"]:
            tok = with_bos_post_processor(tok, spec["bos"])
        for variant, quantize in (("f32", False), ("q4", True)):
            if quantize and not spec.get("quantized", True):
                continue
            build_model(tmp / f"{name}-{variant}", spec, tok, quantize)
        for mode in spec.get("modes", []):
            build_model(tmp / f"{name}-{mode}", spec, tok, mode)
            verify(tmp / f"{name}-{mode}")
        ref = verify(tmp / f"{name}-f32")
        if not spec.get("quantized", True):
            continue
        q4 = verify(tmp / f"{name}-q4")
        agree = float((ref.argmax(-1) == q4.argmax(-1)).mean())
        print(f"  {name}: f32/q4 argmax agreement {agree:.2f}, max |diff| {np.abs(ref - q4).max():.2f}")
    wrap_multimodal(tmp / "gemma3-q4", tmp / "gemma3mm-q4")
    mm = verify(tmp / "gemma3mm-q4")
    if not np.array_equal(mm, verify(tmp / "gemma3-q4")):
        raise RuntimeError("gemma3mm-q4: mlx-lm answers differently from the text model it wraps")


def wrap_multimodal(src, dst):
    """The text model `src` as Gemma 3's multimodal checkpoint stores it (model_type gemma3, the
    text hyper-parameters under text_config, weights under language_model.), plus a stand-in
    vision tower that a text-only loader must drop."""
    import shutil

    import mlx.core as mx

    dst.mkdir(parents=True)
    for f in src.iterdir():
        if not f.name.endswith(".safetensors") and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(f, dst / f.name)
    config = json.loads((src / "config.json").read_text())
    text = {k: v for k, v in config.items() if k not in ("quantization", "quantization_config", "vocab_size")}
    outer = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "vocab_size": config["vocab_size"],
        "text_config": text,
        "vision_config": {"model_type": "siglip_vision_model"},
    }
    for key in ("quantization", "quantization_config"):
        if key in config:
            outer[key] = {k: v for k, v in config[key].items() if not isinstance(v, dict)}
            outer[key].update({f"language_model.{k}": v for k, v in config[key].items() if isinstance(v, dict)})
    write_json(dst / "config.json", outer)
    weights = {}
    for f in sorted(src.glob("*.safetensors")):
        weights.update({f"language_model.{k}": v for k, v in mx.load(str(f)).items()})
    weights["vision_tower.patch_embedding.weight"] = mx.zeros((4, 4), dtype=mx.float32)
    save_weights(dst, weights, 1)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = Path(sys.argv[1]).resolve()
    if build_once(out_dir, fingerprint(), generate):
        print(f"tiny models written to {out_dir}")


if __name__ == "__main__":
    main()
