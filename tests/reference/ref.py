"""Run a batch of reference computations with Apple's mlx-lm / transformers.

Usage: ref.py JOB_JSON OUT_JSON

The Rust test-suite writes JOB_JSON, a list of tasks, and reads OUT_JSON, the
list of results in the same order. One process serves them all, so mlx-lm is
imported (and each model loaded) once. A task that fails gives
{"error": "..."} in its slot; the others still run.

Tasks:
  {"op": "logits", "model": DIR, "tokens": [ids], "out": PATH}
      mlx-lm forward pass over the whole sequence (batch 1, no KV cache);
      writes the logits of every position to PATH as raw little-endian float32,
      row-major [len(tokens), vocab].      -> {"shape": [L, V]}
  {"op": "generate", "model": DIR, "prompt": [ids], "max_tokens": N}
      greedy decoding with mlx_lm.stream_generate, exactly as mlx_lm.generate
      does it (stops at any of the model's EOS ids, which are not included).
      -> {"tokens": [ids], "stopped_on_eos": bool, "eos_token": id | null,
          "finish_reason": "stop" | "length",
          "text": tokenizer.decode(tokens),
          "stream_text": the string mlx_lm.generate returns (its streaming
                         detokenizer; can differ from "text", e.g. it trims
                         a leading space)}
  {"op": "chat_template", "model": DIR, "messages": [...], "tools": [...] | null,
   "add_generation_prompt": bool, "continue_final_message": bool (optional),
   "template": PATH (optional),
   "kwargs": {...} (optional, extra template variables)}
      transformers AutoTokenizer(DIR).apply_chat_template(..., tokenize=False);
      "template" overrides the tokenizer's own chat template; "tools_in_system":
      true puts the tools where Phi-4-mini's model card does (json.dumps of the
      functions as the system message's "tools", a system message of the card's
      wording if there is none) instead of passing them.  -> {"text": str}
  {"op": "encode", "model": DIR, "text": str, "add_special_tokens": bool}
      transformers tokenizer.encode.        -> {"ids": [...]}
  {"op": "decode", "model": DIR, "ids": [...], "skip_special_tokens": bool (default false)}
      transformers tokenizer.decode.        -> {"text": str}
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import json
import sys
import traceback
from pathlib import Path

_models = {}  # model dir -> (mlx model, mlx-lm TokenizerWrapper)
_tokenizers = {}  # model dir -> transformers tokenizer


def model_dir(path):
    p = Path(path).resolve()
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"no model folder (config.json) at {p}")
    return str(p)


def mlx_model(path):
    key = model_dir(path)
    if key not in _models:
        from mlx_lm import load

        _models[key] = load(key)
    return _models[key]


def hf_tokenizer(path):
    key = model_dir(path)
    if key not in _tokenizers:
        from transformers import AutoTokenizer

        _tokenizers[key] = AutoTokenizer.from_pretrained(key)
    return _tokenizers[key]


def op_logits(task):
    import mlx.core as mx
    import numpy as np

    model, _ = mlx_model(task["model"])
    tokens = [int(t) for t in task["tokens"]]
    if not tokens:
        raise ValueError("empty token list")
    logits = model(mx.array(tokens, dtype=mx.int32)[None])[0].astype(mx.float32)
    arr = np.asarray(logits, dtype="<f4")
    with open(task["out"], "wb") as f:
        f.write(np.ascontiguousarray(arr).tobytes())
    return {"shape": list(arr.shape)}


def op_generate(task):
    from mlx_lm import stream_generate

    model, tokenizer = mlx_model(task["model"])
    prompt = [int(t) for t in task["prompt"]]
    tokens, stream_text, last = [], "", None
    # Default sampler of generate_step = argmax (temperature 0).
    for last in stream_generate(model, tokenizer, prompt, max_tokens=int(task["max_tokens"])):
        stream_text += last.text
        if last.finish_reason != "stop":
            tokens.append(int(last.token))
    stopped = last is not None and last.finish_reason == "stop"
    return {
        "tokens": tokens,
        "stopped_on_eos": stopped,
        "eos_token": int(last.token) if stopped else None,
        "finish_reason": last.finish_reason if last is not None else None,
        "text": hf_tokenizer(task["model"]).decode(tokens),
        "stream_text": stream_text,
    }


def op_chat_template(task):
    tok = hf_tokenizer(task["model"])
    kwargs = dict(task.get("kwargs") or {})
    if task.get("template"):
        kwargs["chat_template"] = Path(task["template"]).read_text(encoding="utf-8")
    messages, tools = task["messages"], task.get("tools")
    if task.get("tools_in_system") and tools:
        listed = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
        if messages and messages[0]["role"] == "system":
            messages = [{**messages[0], "tools": listed}] + messages[1:]
        else:
            system = {"role": "system", "content": "You are a helpful assistant with some tools.", "tools": listed}
            messages = [system] + messages
        tools = None
    text = tok.apply_chat_template(
        messages,
        tools=tools,
        add_generation_prompt=bool(task.get("add_generation_prompt", False)),
        continue_final_message=bool(task.get("continue_final_message", False)),
        tokenize=False,
        **kwargs,
    )
    return {"text": text}


def op_encode(task):
    tok = hf_tokenizer(task["model"])
    ids = tok.encode(task["text"], add_special_tokens=bool(task.get("add_special_tokens", True)))
    return {"ids": [int(i) for i in ids]}


def op_decode(task):
    tok = hf_tokenizer(task["model"])
    text = tok.decode(
        [int(i) for i in task["ids"]], skip_special_tokens=bool(task.get("skip_special_tokens", False))
    )
    return {"text": text}


OPS = {
    "logits": op_logits,
    "generate": op_generate,
    "chat_template": op_chat_template,
    "encode": op_encode,
    "decode": op_decode,
}


def run(task):
    try:
        op = OPS.get(task.get("op")) if isinstance(task, dict) else None
        if op is None:
            raise ValueError(f"unknown task {task!r:.200}")
        return op(task)
    except Exception as e:  # one bad task must not sink the batch
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tasks = json.load(f)
    if not isinstance(tasks, list):
        sys.exit("JOB_JSON must hold a list of tasks")
    results = [run(t) for t in tasks]
    out = Path(sys.argv[2])
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
