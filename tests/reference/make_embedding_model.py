"""Build a tiny decoder embedding model (Qwen3-Embedding's layout) for end-to-end tests of
/v1/embeddings, and the reference it is checked against.

Usage: make_embedding_model.py BASE_DIR OUT_DIR

BASE_DIR is the tiny Qwen3 model made by make_tiny_models.py (qwen3-f32). OUT_DIR/tiny-qwen3-embedding
gets its config, tokenizer and weights saved as the bare decoder (`embed_tokens.weight`,
`layers.0...`, `norm.weight`: no `model.` prefix, no lm_head), as Qwen3-Embedding checkpoints
are, plus the sentence-transformers files that make it an embedding model: modules.json
(Transformer, Pooling, Normalize), 1_Pooling/config.json (last-token pooling) and
config_sentence_transformers.json. Idempotent like make_tiny_models.py.

`reference(base_dir, texts)` is the expected vectors: mlx-lm's own Qwen3 decoder run on the base
model, the final-norm hidden state of each input's last token, L2-normalised.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import hashlib
import json
import shutil
import sys
from pathlib import Path

from publish import build_once

VERSION = 1
NAME = "tiny-qwen3-embedding"


def stamp():
    return {"version": VERSION, "script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}


def build(base: Path, out: Path):
    import mlx.core as mx

    out.mkdir(parents=True)
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(base / f, out / f)
    weights = {}
    for f in sorted(base.glob("*.safetensors")):
        weights.update(mx.load(str(f)))
    bare = {k.removeprefix("model."): v for k, v in weights.items() if not k.startswith("lm_head.")}
    mx.save_safetensors(str(out / "model.safetensors"), bare)
    hidden = json.loads((base / "config.json").read_text())["hidden_size"]
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": True, "include_prompt": True,
    }, indent=2))
    (out / "2_Normalize").mkdir()
    (out / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {}, "similarity_fn_name": "cosine"}))


def reference(base_dir, inputs):
    """Unit vectors for `inputs` (strings or token-id lists) by mlx-lm's decoder on the base model."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    model, tokenizer = load(str(base_dir))
    out = []
    for x in inputs:
        ids = tokenizer.encode(x) if isinstance(x, str) else list(x)
        h = model.model(mx.array([ids]))  # the final norm's output
        v = np.array(h[0, -1].astype(mx.float32), dtype=np.float64)
        out.append((v / np.linalg.norm(v)).tolist())
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    base, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    if build_once(out, stamp(), lambda tmp: build(base, tmp / NAME)):
        print(f"embedding model written to {out / NAME}")


if __name__ == "__main__":
    main()
