//! The fused CPU layers: RMSNorm (with the residual add before it), the gated activation, and
//! rope + KV write + attention of a step's decode rows, each one MLX graph node on the CPU where
//! MLX's own build expands them into chains of small operations (see `cpp/fused.cc`); and, on
//! packed weights, a decode step's whole layer as three nodes (`cpp/layer.cc`). They take
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

/// The index of each row's largest value over the last axis of float32 `x` (uint32): MLX's
/// `argmax` answer (the first of equal values; a NaN never wins unless first), the rows shared
/// over the CPU's thread pool where MLX's own compares one element at a time on one thread.
pub fn argmax(x: &Array) -> Result<Array> {
    Array::wrap("cpu_argmax", ffi::cpu_argmax(x.raw()))
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

impl DecodeAttention<'_> {
    /// The bridge's three lists: arrays, integers and floats (see `cpu_decode_attention`).
    fn lists(&self) -> (ArrayList, Vec<i32>, Vec<f32>) {
        let mut inputs =
            ArrayList::of([self.qkv, self.kv, self.positions, self.write, self.gather, self.lens, self.inv_freqs]);
        for (w, _) in self.q_norm.iter().chain(self.k_norm.iter()) {
            inputs.push(w);
        }
        if let Some(s) = self.sinks {
            inputs.push(s);
        }
        let ints = vec![
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.rope_dims,
            self.traditional as i32,
            self.window,
            self.q_norm.is_some() as i32,
            self.k_norm.is_some() as i32,
            self.sinks.is_some() as i32,
        ];
        let eps = |n: Option<(&Array, f32)>| n.map_or(0.0, |(_, e)| e);
        let floats = vec![self.pos_scale, self.mscale, self.scale, eps(self.q_norm), eps(self.k_norm)];
        (inputs, ints, floats)
    }
}

/// Rope, KV write and attention of the decode rows as two nodes (the write, then the attention):
/// returns the rows' attention output `[B, heads * head_dim]` and the cache with the rows' keys
/// and values written (in place when MLX can donate the old one).
pub fn decode_attention(a: &DecodeAttention<'_>) -> Result<(Array, Array)> {
    let (inputs, ints, floats) = a.lists();
    let list = ffi::cpu_decode_attention(&inputs.inner, &ints, &floats).map_err(crate::err("cpu_decode_attention"))?;
    drop(inputs);
    let list = ArrayList { inner: list };
    Ok((list.get(0)?, list.get(1)?))
}

/// A packed weight as the CPU's quantized kernel takes it ([`crate::ops::cpu_qmm_takes`]): affine,
/// 4 or 8 bits, groups of 32, 64 or 128, with its offsets.
#[derive(Clone, Copy)]
pub struct Packed<'a> {
    /// Packed rows `[out, in * bits / 32]` (`u32`).
    pub weight: &'a Array,
    /// Per-group scales `[out, in / group]`.
    pub scales: &'a Array,
    /// Per-group offsets, same shape.
    pub biases: &'a Array,
    /// Elements per group.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
}

/// `(x + m, norm(x + m) @ Wᵀ)` as one node, or with no `m`, `(x, norm(x) @ Wᵀ)`: a layer's
/// input norm and q/k/v product, or the final norm and the output projection. At most
/// [`crate::ops::cpu_qmm_max_rows`] rows.
pub fn norm_product(x: &Array, m: Option<&Array>, norm: &Array, eps: f32, w: &Packed<'_>) -> Result<(Array, Array)> {
    let mut inputs = ArrayList::of([x]);
    if let Some(m) = m {
        inputs.push(m);
    }
    for a in [norm, w.weight, w.scales, w.biases] {
        inputs.push(a);
    }
    let ints = [m.is_some() as i32, w.group_size, w.bits];
    let list = ffi::cpu_norm_product(&inputs.inner, &ints, &[eps]).map_err(crate::err("cpu_norm_product"))?;
    drop(inputs);
    let list = ArrayList { inner: list };
    Ok(match m {
        Some(_) => (list.get(0)?, list.get(1)?),
        None => (x.clone(), list.get(0)?),
    })
}

/// What a decoder layer's decode rows need after their q/k/v product.
pub struct LayerTail<'a> {
    /// The residual stream `[B, hidden]` (the sum the input norm returned).
    pub x: &'a Array,
    /// The post-attention norm's weight and epsilon.
    pub post_norm: (&'a Array, f32),
    /// The output projection.
    pub o: Packed<'a>,
    /// The fused gate and up projections (`[gate | up]`).
    pub gate_up: Packed<'a>,
    /// The down projection.
    pub down: Packed<'a>,
    /// The gate's activation.
    pub act: Gate,
}

/// A decoder layer's decode rows after their q/k/v product, as two nodes: the cache write, then
/// attention, output product, residual add, norm, gate/up product, gated activation and down
/// product, computed as the separate nodes compute them. The step must be its decode rows alone.
/// Returns `(x + attention, the MLP's output, the written cache)`.
pub fn decode_layer(a: &DecodeAttention<'_>, t: &LayerTail<'_>) -> Result<(Array, Array, Array)> {
    let (mut inputs, mut ints, mut floats) = a.lists();
    for x in [t.x, t.post_norm.0] {
        inputs.push(x);
    }
    for p in [&t.o, &t.gate_up, &t.down] {
        for x in [p.weight, p.scales, p.biases] {
            inputs.push(x);
        }
        ints.extend([p.group_size, p.bits]);
    }
    ints.push((t.act == Gate::GeluTanh) as i32);
    floats.push(t.post_norm.1);
    let list = ffi::cpu_decode_layer(&inputs.inner, &ints, &floats).map_err(crate::err("cpu_decode_layer"))?;
    drop(inputs);
    let list = ArrayList { inner: list };
    Ok((list.get(0)?, list.get(1)?, list.get(2)?))
}

/// KV buffers the attention node had to copy because MLX could not donate them (a whole layer's
/// cache each time).
pub fn attention_buffer_copies() -> u64 {
    ffi::cpu_attention_buffer_copies()
}
