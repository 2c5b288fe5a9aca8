//! The decoder-only transformer shared by llama, mistral, qwen2 and qwen3 (they differ only in
//! q/k/v biases, per-head q/k norms and RoPE scaling, which [`ModelConfig`] records), and its
//! batched forward pass.
//!
//! A forward pass takes any number of *segments* — the next tokens of different sequences, one
//! token for a decoding sequence, a chunk for a prefilling one — and runs them as one set of rows
//! through every projection, so each weight is read once per step for the whole batch. Attention
//! is the only per-sequence part: each segment attends to its own KV cache.

pub mod layers;
pub mod loader;

use mlx::{Array, Dtype, ops};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::KvCache;
use layers::{Embedding, Linear, RmsNorm};

/// One decoder layer.
pub struct Layer {
    /// Fused q, k and v projection: output columns are `[q | k | v]`.
    pub qkv: Linear,
    /// Output projection.
    pub o: Linear,
    /// Per-head norm on queries (Qwen3).
    pub q_norm: Option<RmsNorm>,
    /// Per-head norm on keys (Qwen3).
    pub k_norm: Option<RmsNorm>,
    /// Norm before attention.
    pub input_norm: RmsNorm,
    /// Norm before the MLP.
    pub post_norm: RmsNorm,
    /// Fused gate and up projections: output columns are `[gate | up]`.
    pub gate_up: Linear,
    /// Down projection.
    pub down: Linear,
}

/// A loaded model, ready to run.
pub struct Model {
    /// Hyper-parameters.
    pub cfg: ModelConfig,
    /// Token embedding.
    pub embed: Embedding,
    /// Decoder layers.
    pub layers: Vec<Layer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Output projection, when not tied to the embedding.
    pub lm_head: Option<Linear>,
    /// Activation type (float32 on CPU).
    pub dtype: Dtype,
    /// Explicit RoPE frequencies (Llama 3 scaling, GGUF factors).
    pub rope_freqs: Option<Array>,
    /// RoPE position scale (1 / linear factor).
    pub rope_scale: f32,
}

/// The next tokens of one sequence in a batched forward pass.
pub struct Segment<'a> {
    /// The sequence's cache; advanced by the number of tokens.
    pub cache: &'a mut KvCache,
    /// Tokens to run.
    pub tokens: &'a [u32],
    /// Whether the logits of the last token are wanted.
    pub logits: bool,
}

impl Model {
    /// A fresh cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim, self.dtype)
    }

    /// Bytes of KV cache one token takes.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cfg.num_layers * 2 * self.cfg.num_kv_heads * self.cfg.head_dim * self.dtype.size()
    }

    /// Runs the segments through the model and returns the logits `[n, vocab]` (float32) of the
    /// last token of each segment that asked for them, in order; `None` when none did. Caches
    /// advance even though nothing is evaluated yet: the caller evaluates the result.
    pub fn forward(&self, segments: &mut [Segment<'_>]) -> Result<Option<Array>> {
        let ids: Vec<u32> = segments.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let total = ids.len() as i32;
        let mut x = self.embed.forward(&Array::from_u32(&ids, &[total])?, self.dtype)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(&x)?;
            let attn = self.attention(l, layer, &h, segments)?;
            x = ops::add(&x, &layer.o.forward(&attn)?)?;
            let h = layer.post_norm.forward(&x)?;
            let gu = layer.gate_up.forward(&h)?;
            let inter = self.cfg.intermediate_size as i32;
            let gate = ops::slice_axis(&gu, 1, 0, inter)?;
            let up = ops::slice_axis(&gu, 1, inter, 2 * inter)?;
            x = ops::add(&x, &layer.down.forward(&ops::multiply(&ops::silu(&gate)?, &up)?)?)?;
        }
        let mut rows = Vec::new();
        let mut end = 0i32;
        for s in segments.iter_mut() {
            end += s.tokens.len() as i32;
            if s.logits {
                rows.push(end - 1);
            }
            s.cache.advance(s.tokens.len());
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let n = rows.len() as i32;
        let last = ops::take(&x, &Array::from_i32(&rows, &[n])?, 0)?;
        let last = self.norm.forward(&last)?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&last)?,
            None => self.embed.as_linear(&last)?,
        };
        Ok(Some(layers::cast(logits, Dtype::F32)?))
    }

    fn attention(&self, l: usize, layer: &Layer, h: &Array, segments: &mut [Segment<'_>]) -> Result<Array> {
        let cfg = &self.cfg;
        let (hd, nh, nkv) = (cfg.head_dim as i32, cfg.num_heads as i32, cfg.num_kv_heads as i32);
        let qkv = layer.qkv.forward(h)?;
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        let mut outs = Vec::with_capacity(segments.len());
        let mut start = 0i32;
        for seg in segments.iter_mut() {
            let n = seg.tokens.len() as i32;
            let rows = ops::slice(&qkv, &[start, 0], &[start + n, (nh + 2 * nkv) * hd])?;
            start += n;
            let offset = seg.cache.len() as i32;
            let q = self.heads(&ops::slice_axis(&rows, 1, 0, nh * hd)?, n, nh, layer.q_norm.as_ref(), offset, true)?;
            let k = self.heads(
                &ops::slice_axis(&rows, 1, nh * hd, (nh + nkv) * hd)?,
                n,
                nkv,
                layer.k_norm.as_ref(),
                offset,
                true,
            )?;
            let v = self.heads(
                &ops::slice_axis(&rows, 1, (nh + nkv) * hd, (nh + 2 * nkv) * hd)?,
                n,
                nkv,
                None,
                offset,
                false,
            )?;
            let (keys, values) = seg.cache.update(l, &k, &v)?;
            let mask = if n > 1 { "causal" } else { "" };
            let o = ops::scaled_dot_product_attention(&q, &keys, &values, scale, mask)?;
            outs.push(ops::reshape(&ops::transpose(&o, &[0, 2, 1, 3])?, &[n, nh * hd])?);
        }
        if outs.len() == 1 {
            return Ok(outs.pop().unwrap());
        }
        Ok(ops::concatenate(&outs.iter().collect::<Vec<_>>(), 0)?)
    }

    /// `[n, heads * hd]` → `[1, heads, n, hd]`, normed and rotated as the layer requires.
    fn heads(&self, x: &Array, n: i32, heads: i32, norm: Option<&RmsNorm>, offset: i32, rotate: bool) -> Result<Array> {
        let hd = self.cfg.head_dim as i32;
        let mut x = ops::reshape(x, &[1, n, heads, hd])?;
        if let Some(norm) = norm {
            x = norm.forward(&x)?;
        }
        x = ops::transpose(&x, &[0, 2, 1, 3])?;
        if rotate {
            x = match &self.rope_freqs {
                Some(freqs) => ops::rope_with_freqs(&x, hd, self.cfg.rope_traditional, self.rope_scale, offset, freqs)?,
                None => ops::rope(&x, hd, self.cfg.rope_traditional, self.cfg.rope_theta, self.rope_scale, offset)?,
            };
        }
        Ok(x)
    }

    /// Every weight array, for evaluation and memory accounting.
    pub fn arrays(&self) -> Vec<&Array> {
        let mut out = self.embed.0.arrays();
        for l in &self.layers {
            out.extend(l.qkv.arrays());
            out.extend(l.o.arrays());
            out.extend(l.gate_up.arrays());
            out.extend(l.down.arrays());
            out.extend([&l.input_norm.weight, &l.post_norm.weight]);
            out.extend(l.q_norm.iter().chain(l.k_norm.iter()).map(|n| &n.weight));
        }
        out.push(&self.norm.weight);
        if let Some(h) = &self.lm_head {
            out.extend(h.arrays());
        }
        out.extend(self.rope_freqs.iter());
        out
    }

    /// Bytes of weights.
    pub fn weight_bytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }
}
