"""Build tiny "scripted" models whose greedy answer is a fixed text, for end-to-end tests of
tool calls and reasoning through the real daemon and gateway.

Usage: make_scripted_models.py BASE_DIR OUT_DIR

BASE_DIR is the tiny Qwen-style model made by make_tiny_models.py (qwen2-f32): its tokenizer
and Qwen2.5 chat template are reused. Each scripted model is a qwen2 model whose layers add
nothing to the residual stream (o_proj and down_proj are zero), so the logits depend on the
current token only: a bigram model. Its output projection maps each token of a script to the
next one, and the last token of the chat template's generation prompt to the first. The script
pieces are added tokens of the tokenizer, chosen so no token repeats — which a bigram model
needs. With greedy decoding the model then answers exactly:

  scripted-tools:      <tool_call>\\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\\n</tool_call>
  scripted-reasoning:  <think>\\nThe user greets me.\\n</think>\\n\\nHello from Paris!
  scripted-harmony:    <|channel|>analysis<|message|>The user greets me.<|end|><|start|>assistant<|channel|>final<|message|>Hello from Paris!
  scripted-harmony-tools: the same analysis, then a commentary message to=functions.get_weather
                       whose body is {"city": "Paris", "unit": "celsius"}
  scripted-phi4-tools: <|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]<|/tool_call|>
                       under Phi-4-mini's chat template

then <|im_end|> (EOS). Written in the mlx-community layout; idempotent like make_tiny_models.py.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from publish import build_once

SCRIPTS = {
    "scripted-tools": [
        "<tool_call>",
        '\n{"name": "get_weather", "arguments": ',
        '{"city": "Paris", ',
        '"unit": "celsius"}',
        "}\n",
        "</tool_call>",
    ],
    "scripted-reasoning": [
        "<think>",
        "\nThe user greets me.\n",
        "</think>",
        "\n\nHello from Paris!",
    ],
    # gpt-oss's harmony format (its markers joined into added tokens, so that no token repeats).
    "scripted-harmony": [
        "<|channel|>analysis<|message|>",
        "The user greets me.",
        "<|end|><|start|>assistant<|channel|>final<|message|>",
        "Hello from Paris!",
    ],
    "scripted-harmony-tools": [
        "<|channel|>analysis<|message|>",
        "Need the weather.",
        "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
        '{"city": "Paris", ',
        '"unit": "celsius"}',
    ],
    # Phi-4-mini's call list between its tool-call tokens.
    "scripted-phi4-tools": [
        "<|tool_call|>",
        '[{"name": "get_weather", "arguments": ',
        '{"city": "Paris", ',
        '"unit": "celsius"}',
        "}]",
        "<|/tool_call|>",
    ],
}

PHI4_TEMPLATE = Path(__file__).with_name("templates") / "phi4-mini.jinja"

# A harmony chat template (the shape of gpt-oss's, much reduced) for the harmony scripts: the
# gateway reads channels and calls of models whose template renders harmony.
HARMONY_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' -%}<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>"
    "{%- else -%}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}"
)
HIDDEN = 64
VERSION = 1


def stamp():
    h = hashlib.sha256(Path(__file__).read_bytes() + PHI4_TEMPLATE.read_bytes()).hexdigest()
    return {"version": VERSION, "script": h}


def build(base: Path, out: Path, name: str, pieces):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    new = [p for p in pieces if tok.token_to_id(p) is None]
    tok.add_tokens([AddedToken(p, special=False, normalized=False) for p in new])
    ids = [tok.token_to_id(p) for p in pieces]
    assert None not in ids and len(set(ids)) == len(ids), (name, ids)
    cfg = json.loads((base / "config.json").read_text())
    tok_cfg = json.loads((base / "tokenizer_config.json").read_text())
    if name.startswith("scripted-harmony"):
        tok_cfg["chat_template"] = HARMONY_TEMPLATE
    elif name.startswith("scripted-phi4"):
        tok_cfg["chat_template"] = PHI4_TEMPLATE.read_text(encoding="utf-8")
    eos = tok.token_to_id("<|im_end|>")

    # The last token of the generation prompt, as the template renders it.
    from jinja2 import Environment

    env = Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(Exception(m))
    prompt = env.from_string(tok_cfg["chat_template"]).render(
        messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True, tools=None
    )
    last = tok.encode(prompt, add_special_tokens=False).ids[-1]
    chain = [last] + ids + [eos]
    succ = {}
    for a, b in zip(chain, chain[1:]):
        assert succ.get(a, b) == b, f"{name}: token {a} needs two successors"
        succ[a] = b

    vocab = tok.get_vocab_size(with_added_tokens=True)
    rng = np.random.default_rng(1234)
    embed = rng.standard_normal((vocab, HIDDEN)).astype(np.float32)
    normed = embed / np.sqrt((embed**2).mean(axis=1, keepdims=True) + 1e-6)
    head = np.zeros((vocab, HIDDEN), dtype=np.float32)
    for a, b in succ.items():
        head[b] += normed[a] * 0.5
    inter, heads, kv, hd = 128, 4, 2, HIDDEN // 4
    w = {
        "model.embed_tokens.weight": embed,
        "model.norm.weight": np.ones(HIDDEN, np.float32),
        "lm_head.weight": head,
    }
    p = "model.layers.0"
    w[f"{p}.input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    w[f"{p}.post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    for proj, rows in [("q_proj", heads * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)]:
        w[f"{p}.self_attn.{proj}.weight"] = (rng.standard_normal((rows, HIDDEN)) * 0.05).astype(np.float32)
        w[f"{p}.self_attn.{proj}.bias"] = np.zeros(rows, np.float32)
    w[f"{p}.self_attn.o_proj.weight"] = np.zeros((HIDDEN, heads * hd), np.float32)
    w[f"{p}.mlp.gate_proj.weight"] = (rng.standard_normal((inter, HIDDEN)) * 0.05).astype(np.float32)
    w[f"{p}.mlp.up_proj.weight"] = (rng.standard_normal((inter, HIDDEN)) * 0.05).astype(np.float32)
    w[f"{p}.mlp.down_proj.weight"] = np.zeros((HIDDEN, inter), np.float32)

    out.mkdir(parents=True)
    import mlx.core as mx

    mx.save_safetensors(str(out / "model.safetensors"), {k: mx.array(v) for k, v in w.items()}, {"format": "mlx"})
    cfg.update(
        model_type="qwen2", hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=heads,
        num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab, tie_word_embeddings=False,
        eos_token_id=eos,
    )
    cfg.pop("quantization", None)
    cfg.pop("quantization_config", None)
    cfg.pop("head_dim", None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save(str(out / "tokenizer.json"))
    decoder = tok_cfg.setdefault("added_tokens_decoder", {})
    for p_, i in zip(pieces, ids):
        decoder.setdefault(str(i), {"content": p_, "lstrip": False, "normalized": False, "rstrip": False,
                                    "single_word": False, "special": False})
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    return "".join(pieces)


def verify(path: Path, expected: str):
    from mlx_lm import load, generate

    model, tokenizer = load(str(path))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    text = generate(model, tokenizer, prompt, max_tokens=20)
    assert text == expected, f"{path.name}: {text!r} != {expected!r}"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    base, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()

    def generate(tmp):
        for name, pieces in SCRIPTS.items():
            text = build(base, tmp / name, name, pieces)
            verify(tmp / name, text)

    if build_once(out, stamp(), generate):
        print(f"scripted models written to {out}")


if __name__ == "__main__":
    main()
