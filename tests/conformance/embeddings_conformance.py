"""Embeddings of zeta-gateway, checked with the official `openai` client against mlx-lm's hidden
states on the same weights.

Usage: embeddings_conformance.py BASE_URL BASE_MODEL_DIR

The Rust test `tests/e2e/embeddings.rs` starts the real daemon and gateway with `tiny-embed` (the
tiny Qwen3 embedding model of tests/reference/make_embedding_model.py) and the embedded SmolLM2,
and runs this script. BASE_MODEL_DIR is the tiny Qwen3 model the embedding model was made from,
which mlx-lm loads for the reference.

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import base64
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from make_embedding_model import reference  # noqa: E402

from checks import run  # noqa: E402

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
BASE_MODEL = sys.argv[2] if len(sys.argv) > 2 else ""
client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=120)
EMBED = "tiny-embed"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "What is the capital of France?", "Paris", "robot paints the sky"]
REF = reference(BASE_MODEL, TEXTS)


def cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_vectors_match_the_reference():
    r = client.embeddings.create(model=EMBED, input=TEXTS, encoding_format="float")
    assert r.object == "list" and r.model == EMBED and len(r.data) == len(TEXTS), r
    for i, (d, ref) in enumerate(zip(r.data, REF)):
        assert d.index == i and d.object == "embedding", d
        assert len(d.embedding) == len(ref), (len(d.embedding), len(ref))
        assert abs(np.linalg.norm(d.embedding) - 1) < 1e-4, "unit length"
        assert cos(d.embedding, ref) >= 0.999, (i, cos(d.embedding, ref))
    assert r.usage.prompt_tokens == r.usage.total_tokens > len(TEXTS), r.usage
    # Different texts, different vectors.
    assert cos(r.data[0].embedding, r.data[1].embedding) < 0.999


def check_base64_token_ids_and_dimensions():
    floats = client.embeddings.create(model=EMBED, input=TEXTS[1], encoding_format="float").data[0].embedding
    # The SDK asks for base64 by default and decodes it; the raw body is base64 of float32s.
    default = client.embeddings.create(model=EMBED, input=TEXTS[1]).data[0].embedding
    assert np.allclose(default, floats, atol=1e-7), "base64 decodes to the same floats"
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=TEXTS[1], encoding_format="base64")
    b64 = raw.http_response.json()["data"][0]["embedding"]
    assert list(struct.unpack(f"<{len(floats)}f", base64.b64decode(b64))) == floats
    # Token ids embed as the text they spell.
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(BASE_MODEL).encode(TEXTS[1])
    by_ids = client.embeddings.create(model=EMBED, input=[ids, ids], encoding_format="float").data
    assert len(by_ids) == 2 and cos(by_ids[0].embedding, floats) > 0.99999, cos(by_ids[0].embedding, floats)
    # Matryoshka: the first values, unit length again.
    short = client.embeddings.create(model=EMBED, input=TEXTS[1], dimensions=16, encoding_format="float").data[0].embedding
    want = np.asarray(floats[:16]) / np.linalg.norm(floats[:16])
    assert len(short) == 16 and np.allclose(short, want, atol=1e-5), short


def check_batched_inputs_embed_as_alone():
    alone = [client.embeddings.create(model=EMBED, input=t, encoding_format="float").data[0].embedding for t in TEXTS]
    many = [TEXTS[i % len(TEXTS)] for i in range(40)]
    # Three at once: each queues 16 inputs at a time, within the engine's queue of 64.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: client.embeddings.create(model=EMBED, input=many, encoding_format="float"), range(3)))
    for r in results:
        for i, d in enumerate(r.data):
            assert cos(d.embedding, alone[i % len(TEXTS)]) > 0.9999, (i, cos(d.embedding, alone[i % len(TEXTS)]))


def check_the_wrong_kind_of_model_is_refused():
    def refused(param, call):
        try:
            call()
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["param"] == param, (param, e.body)
            return e.body["message"]
        raise AssertionError(f"must be refused ({param})")

    assert "embedding model" in refused("model", lambda: client.chat.completions.create(
        model=EMBED, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]))
    assert "embedding" in refused("model", lambda: client.embeddings.create(model="smollm2-135m", input="Hi"))
    # Refused from its files, before any load: a generative model not loaded stays so.
    assert "embedding" in refused("model", lambda: client.embeddings.create(model="tiny-gen", input="Hi"))
    loaded = client.get("/models/loaded", cast_to=object)["loaded"]
    assert "tiny-gen" not in loaded, loaded
    refused("input", lambda: client.embeddings.create(model=EMBED, input=""))
    refused("input[1]", lambda: client.embeddings.create(model=EMBED, input=["a", ""]))
    assert "inputs" not in refused("input[0][1]", lambda: client.embeddings.create(model=EMBED, input=[[1, 999999999]]))
    refused("input[1]", lambda: client.embeddings.create(model=EMBED, input=[1, 999999999]))
    # An input past the context (512 tokens) is named by its place in the list.
    too_long = [i % 400 + 1 for i in range(600)]
    assert "context" in refused("input[1]", lambda: client.embeddings.create(model=EMBED, input=[[1, 2], too_long]))
    refused("input", lambda: client.embeddings.create(model=EMBED, input=too_long))
    refused("dimensions", lambda: client.embeddings.create(model=EMBED, input="a", dimensions=100000))
    refused("encoding_format", lambda: client.embeddings.create(model=EMBED, input="a", encoding_format="int8"))


if __name__ == "__main__":
    run(globals())
