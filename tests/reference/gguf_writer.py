"""A small GGUF (version 3) writer for the reference scripts, written from the GGUF spec: the
metadata value types llama.cpp writes, and tensors as F32 or as MXFP4 blocks (which MLX's
`mx.save_gguf` cannot write).

Metadata values are tagged: ("u32", n), ("f32", x), ("bool", b), ("i32[]", [..]), ("f32[]", [..]),
a str, or a list of str. Tensors are float arrays (written F32) or ("mxfp4", weight, scales) with
MLX's mxfp4 layout: weight uint32 [..., K / 8] (eight 4-bit codes per word, low nibble first) and
scales uint8 [..., K / 32] (E8M0 exponents).
"""

import os
import struct

import numpy as np

ALIGN = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_MXFP4 = 0, 39


def _string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(v):
    if isinstance(v, str):
        return struct.pack("<I", STRING) + _string(v)
    if isinstance(v, list):
        return struct.pack("<IIQ", ARRAY, STRING, len(v)) + b"".join(_string(s) for s in v)
    tag, x = v
    if tag == "u32":
        return struct.pack("<II", U32, int(x))
    if tag == "f32":
        return struct.pack("<If", F32, float(x))
    if tag == "bool":
        return struct.pack("<I?", BOOL, bool(x))
    if tag == "i32[]":
        return struct.pack("<IIQ", ARRAY, I32, len(x)) + np.asarray(x, dtype="<i4").tobytes()
    if tag == "f32[]":
        return struct.pack("<IIQ", ARRAY, F32, len(x)) + np.asarray(x, dtype="<f4").tobytes()
    raise ValueError(f"unknown metadata tag {tag}")


def mxfp4_blocks(weight, scales):
    """MLX's mxfp4 (weight, scales) as ggml's MXFP4 blocks: per 32 weights, the E8M0 byte, then
    16 bytes holding element j in the low nibble of byte j and element j + 16 in its high one."""
    b = np.ascontiguousarray(weight, dtype="<u4").view(np.uint8)
    codes = np.stack([b & 0x0F, b >> 4], axis=-1).reshape(*b.shape[:-1], -1, 32)
    qs = codes[..., :16] | (codes[..., 16:] << 4)
    blocks = np.concatenate([np.asarray(scales, dtype=np.uint8)[..., None], qs.astype(np.uint8)], axis=-1)
    shape = (*weight.shape[:-1], weight.shape[-1] * 8)
    return shape, blocks.tobytes()


def write(path, tensors, meta):
    """Writes `tensors` (name → array or ("mxfp4", weight, scales)) and `meta` to `path`."""
    infos, datas = [], []
    for name, t in tensors.items():
        if isinstance(t, tuple) and t[0] == "mxfp4":
            shape, data = mxfp4_blocks(t[1], t[2])
            kind = GGML_MXFP4
        else:
            a = np.ascontiguousarray(t, dtype="<f4")
            shape, data, kind = a.shape, a.tobytes(), GGML_F32
        infos.append((name, shape, kind))
        datas.append(data)
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)))
    for k, v in meta.items():
        out += _string(k) + _value(v)
    offset = 0
    for (name, shape, kind), data in zip(infos, datas):
        out += _string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", kind, offset)
        offset += -(-len(data) // ALIGN) * ALIGN
    out += b"\0" * (-len(out) % ALIGN)
    for data in datas:
        out += data + b"\0" * (-len(data) % ALIGN)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, path)
