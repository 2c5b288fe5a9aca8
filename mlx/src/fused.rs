//! The fused CPU layers: RMSNorm (with the residual add before it), the gated activation, and
//! rope + KV write + attention of a step's decode rows, each one MLX graph node on the CPU where
//! MLX's own build expands them into chains of small operations (see `cpp/fused.cc`). They take
//! float32 on a CPU stream only; the engine uses MLX's fused operations on a GPU.

use crate::Result;
use crate::array::{Array, ArrayList};
use crate::ffi::ffi;

/// RMS normalization of float32 `x` over its last axis, scaled by `weight` `[dim]`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    Array::wrap("cpu_rms_norm", ffi::cpu_rms_norm(x.raw(), weight.raw(), eps))
}

/// `(x + y, rms_norm(x + y))` as one node: the residual add before a norm.
pub fn add_rms_norm(x: &Array, y: &Array, weight: &Array, eps: f32) -> Result<(Array, Array)> {
    let list = ffi::cpu_add_rms_norm(x.raw(), y.raw(), weight.raw(), eps).map_err(crate::err("cpu_add_rms_norm"))?;
    let list = ArrayList { inner: list };
    Ok((list.get(0)?, list.get(1)?))
}

/// The activation of a gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `x · sigmoid(x)`.
    Silu,
    /// GeLU, tanh approximation.
    GeluTanh,
}

/// `act(gu[..., :I]) · gu[..., I:]` → `[..., I]` for float32 `gu` `[..., 2I]`.
pub fn gated_act(gu: &Array, act: Gate) -> Result<Array> {
    Array::wrap("cpu_gated_act", ffi::cpu_gated_act(gu.raw(), (act == Gate::GeluTanh) as i32))
}

/// Everything the decode rows' attention reads.
pub struct DecodeAttention<'a> {
    /// The fused projection's output `[rows, (heads + 2 kv_heads) * head_dim]`; rows `0..B` are
    /// the decode rows (B = `lens.size()`).
    pub qkv: &'a Array,
    /// The layer's cache `[slots, 2, kv_heads, head_dim]`: each slot's keys, then its values.
    pub kv: &'a Array,
    /// Each row's position (`i32`, at least B).
    pub positions: &'a Array,
    /// Each row's slot for its new key and value (at least B).
    pub write: &'a Array,
    /// Each row's slots `[B * W]`, its first `lens[b]` read.
    pub gather: &'a Array,
    /// Each row's length (B values, any shape).
    pub lens: &'a Array,
    /// Rope's inverse wavelengths `[rope_dims / 2]`.
    pub inv_freqs: &'a Array,
    /// Per-head q norm weight `[head_dim]` and epsilon.
    pub q_norm: Option<(&'a Array, f32)>,
    /// Per-head k norm weight and epsilon.
    pub k_norm: Option<(&'a Array, f32)>,
    /// Per-head sink logits `[heads]`.
    pub sinks: Option<&'a Array>,
    /// Query heads.
    pub heads: i32,
    /// Key and value heads.
    pub kv_heads: i32,
    /// Features per head.
    pub head_dim: i32,
    /// Rotated features (the first ones).
    pub rope_dims: i32,
    /// Interleaved pairs (else the two halves).
    pub traditional: bool,
    /// Position scale.
    pub pos_scale: f32,
    /// Factor on cosines and sines.
    pub mscale: f32,
    /// Score scale.
    pub scale: f32,
    /// Keys at most this far behind (0: all).
    pub window: i32,
}

/// Rope, KV write and attention of the decode rows as two nodes (the write, then the attention):
/// returns the rows' attention output `[B, heads * head_dim]` and the cache with the rows' keys
/// and values written (in place when MLX can donate the old one).
pub fn decode_attention(a: &DecodeAttention<'_>) -> Result<(Array, Array)> {
    let mut inputs = ArrayList::of([a.qkv, a.kv, a.positions, a.write, a.gather, a.lens, a.inv_freqs]);
    for (w, _) in a.q_norm.iter().chain(a.k_norm.iter()) {
        inputs.push(w);
    }
    if let Some(s) = a.sinks {
        inputs.push(s);
    }
    let ints = [
        a.heads,
        a.kv_heads,
        a.head_dim,
        a.rope_dims,
        a.traditional as i32,
        a.window,
        a.q_norm.is_some() as i32,
        a.k_norm.is_some() as i32,
        a.sinks.is_some() as i32,
    ];
    let eps = |n: Option<(&Array, f32)>| n.map_or(0.0, |(_, e)| e);
    let floats = [a.pos_scale, a.mscale, a.scale, eps(a.q_norm), eps(a.k_norm)];
    let list = ffi::cpu_decode_attention(&inputs.inner, &ints, &floats).map_err(crate::err("cpu_decode_attention"))?;
    drop(inputs);
    let list = ArrayList { inner: list };
    Ok((list.get(0)?, list.get(1)?))
}

/// KV buffers the attention node had to copy because MLX could not donate them (a whole layer's
/// cache each time).
pub fn attention_buffer_copies() -> u64 {
    ffi::cpu_attention_buffer_copies()
}
