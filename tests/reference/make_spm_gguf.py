"""A SentencePiece tokenizer (Llama 2 / Mistral / Mixtral / Gemma style) written into GGUF metadata
as llama.cpp writes it, with the encodings SentencePiece itself gives, for the engine's GGUF
tokenizer test.

Usage: make_spm_gguf.py OUT_DIR

Trains two tiny BPE SentencePiece models with Llama's settings (byte fallback, digits split,
no normalization; <unk> <s> </s> = 0 1 2): "spm" with a dummy prefix (Llama 2, Mistral) and
"spm-noprefix" without one (Gemma), and writes for each NAME:

    OUT_DIR/NAME.model          the SentencePiece model
    OUT_DIR/NAME.gguf           tokenizer.ggml.model "llama": tokens, scores, token_type (1 normal,
                                2 unknown, 3 control, 6 byte), bos/eos/unk ids, add_bos_token,
                                add_space_prefix; one tiny tensor (GGUF needs one)
    OUT_DIR/NAME.expected.json  [{"text": ..., "ids": SentencePiece's ids (no BOS)}, ...]

Idempotent like make_tiny_models.py.
"""

import hashlib
import json
import sys
from pathlib import Path

from publish import build_once

TEXTS = [
    "Hello world! The capital of France is Paris.",
    "  two  spaces,\ttab\nnewline\n\n123456 it's DON'T café",
    "你好，世界！ 😀 🚀 — done.",
    "def add(a, b):\n    return a + b\n",
    "",
    " leading space and trailing space ",
    "Zürich, smörgåsbord, jalapeño: ÀÉÎÕÜ",
]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog was not amused.",
    "Once upon a time there was a small robot that wanted to learn how to paint.",
    "What is the capital of France? The capital of France is Paris.",
    "Hello! How are you today? I am fine, thank you. Would you like some tea?",
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, 2))\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159",
    "Café, naïve, résumé, façade, jalapeño, Zürich, smörgåsbord.",
] * 20


def fingerprint():
    return {"sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}


def generate(tmp):
    tmp.mkdir(parents=True, exist_ok=True)
    for name, prefix in (("spm", True), ("spm-noprefix", False)):
        build(tmp, name, prefix)


def build(tmp, name, dummy_prefix):
    import io

    import mlx.core as mx
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=dummy_prefix,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (tmp / f"{name}.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.get_piece_size()

    def kind(i):
        if sp.is_unknown(i):
            return 2
        if sp.is_control(i):
            return 3
        if sp.is_byte(i):
            return 6
        return 1

    meta = {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
        "tokenizer.ggml.scores": mx.array([sp.get_score(i) for i in range(n)], dtype=mx.float32),
        "tokenizer.ggml.token_type": mx.array([kind(i) for i in range(n)], dtype=mx.int32),
        "tokenizer.ggml.bos_token_id": mx.array(1, dtype=mx.uint32),
        "tokenizer.ggml.eos_token_id": mx.array(2, dtype=mx.uint32),
        "tokenizer.ggml.unknown_token_id": mx.array(0, dtype=mx.uint32),
        "tokenizer.ggml.add_bos_token": mx.array(1, dtype=mx.uint8),
        "tokenizer.ggml.add_space_prefix": mx.array(int(dummy_prefix), dtype=mx.uint8),
    }
    mx.save_gguf(str(tmp / f"{name}.gguf"), {"placeholder": mx.zeros((1,))}, meta)
    expected = [{"text": t, "ids": sp.encode(t)} for t in TEXTS]
    for e in expected:
        if sp.decode(e["ids"]) != e["text"]:
            raise RuntimeError(f"SentencePiece does not round-trip {e['text']!r}")
    (tmp / f"{name}.expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1))
    print(f"  {name}: {n} pieces, {sum(kind(i) == 6 for i in range(n))} byte pieces")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1]).resolve()
    if build_once(out, fingerprint(), generate):
        print(f"SentencePiece GGUF written to {out}")


if __name__ == "__main__":
    main()
