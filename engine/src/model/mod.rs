//! The decoder-only transformer shared by llama, mistral, qwen2, qwen3 and their mixture-of-experts
//! variants (they differ in q/k/v biases, per-head q/k norms, RoPE scaling and dense or routed
//! MLPs, which [`ModelConfig`] records), and its batched forward pass.
//!
//! A forward pass runs one [`StepInput`] — the next token of every decoding sequence and a chunk
//! of every prefilling one — as one set of rows through every projection, so each weight is read
//! once per step for the whole batch, and attention as one batched call for the decode rows and
//! one for the chunks, each row reading its own slots of the shared [`KvPool`].

pub mod layers;
pub mod loader;
pub mod moe;
pub mod rope;
pub mod step;

use mlx::{Array, Dtype, ops};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::KvPool;
use layers::{Embedding, Linear, RmsNorm};
use rope::{Rope, Table};
pub use step::{DecodeRow, PrefillRow, Shapes, StepInput, TokenSource};

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
    /// The feed-forward block.
    pub mlp: Mlp,
}

/// A layer's feed-forward block.
pub enum Mlp {
    /// SwiGLU.
    Dense {
        /// Fused gate and up projections: output columns are `[gate | up]`.
        gate_up: Linear,
        /// Down projection.
        down: Linear,
    },
    /// Routed experts.
    Sparse(moe::Moe),
}

impl Mlp {
    /// `x` `[n, hidden]` → `[n, hidden]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Mlp::Dense { gate_up, down } => {
                let gu = gate_up.forward(x)?;
                let inter = gate_up.out_features() / 2;
                let gate = ops::slice_axis(&gu, 1, 0, inter)?;
                let up = ops::slice_axis(&gu, 1, inter, 2 * inter)?;
                down.forward(&ops::multiply(&ops::silu(&gate)?, &up)?)
            }
            Mlp::Sparse(moe) => moe.forward(x),
        }
    }

    /// Every array this block holds.
    pub fn arrays(&self) -> Vec<&Array> {
        match self {
            Mlp::Dense { gate_up, down } => gate_up.arrays().into_iter().chain(down.arrays()).collect(),
            Mlp::Sparse(moe) => moe.arrays(),
        }
    }
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
    /// Rotary embedding.
    pub rope: Rope,
}

impl Model {
    /// An empty KV pool for this model, holding at most `limit_bytes` (none: unbounded).
    pub fn new_pool(&self, limit_bytes: Option<usize>) -> KvPool {
        KvPool::new(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim, self.dtype, limit_bytes)
    }

    /// Bytes of KV cache one token takes.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cfg.num_layers * 2 * self.cfg.num_kv_heads * self.cfg.head_dim * self.dtype.size()
    }

    /// Runs one step and returns the logits `[n, vocab]` (float32) of the rows
    /// [`StepInput::build`] marked (decode rows, then chunks that asked), or `None` when none did.
    /// The step's keys and values go into `pool`; nothing is evaluated yet.
    pub fn forward(&self, pool: &mut KvPool, step: &StepInput) -> Result<Option<Array>> {
        let Some(last) = self.hidden(pool, step)? else { return Ok(None) };
        let logits = match &self.lm_head {
            Some(head) => head.forward(&last)?,
            None => self.embed.as_linear(&last)?,
        };
        Ok(Some(layers::cast(logits, Dtype::F32)?))
    }

    /// Runs one step like [`Model::forward`] but returns the final-norm hidden states
    /// `[n, hidden]` (the activation type) of the marked rows: what embedding models pool.
    pub fn hidden(&self, pool: &mut KvPool, step: &StepInput) -> Result<Option<Array>> {
        let mut x = self.embed.forward(&step.ids, self.dtype)?;
        let table = self.rope.table(&step.positions)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(&x)?;
            let attn = self.attention(l, layer, &h, pool, step, table.as_ref())?;
            x = ops::add(&x, &layer.o.forward(&attn)?)?;
            let h = layer.post_norm.forward(&x)?;
            x = ops::add(&x, &layer.mlp.forward(&h)?)?;
        }
        let Some(rows) = &step.logits_rows else { return Ok(None) };
        Ok(Some(self.norm.forward(&ops::take(&x, rows, 0)?)?))
    }

    fn attention(
        &self,
        l: usize,
        layer: &Layer,
        h: &Array,
        pool: &mut KvPool,
        step: &StepInput,
        table: Option<&Table>,
    ) -> Result<Array> {
        let cfg = &self.cfg;
        let (hd, nh, nkv) = (cfg.head_dim as i32, cfg.num_heads as i32, cfg.num_kv_heads as i32);
        let qkv = layer.qkv.forward(h)?;
        let q = self.heads(&ops::slice_axis(&qkv, 1, 0, nh * hd)?, nh, layer.q_norm.as_ref(), step, Some(table))?;
        let k = self.heads(
            &ops::slice_axis(&qkv, 1, nh * hd, (nh + nkv) * hd)?,
            nkv,
            layer.k_norm.as_ref(),
            step,
            Some(table),
        )?;
        let v = self.heads(&ops::slice_axis(&qkv, 1, (nh + nkv) * hd, (nh + 2 * nkv) * hd)?, nkv, None, step, None)?;
        pool.write(l, &step.write, &k, &v)?;
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        let mut outs = Vec::with_capacity(2);
        let mut b = 0;
        if let Some(d) = &step.decode {
            b = d.rows;
            let q = ops::slice_axis(&q, 0, 0, b)?;
            let (keys, values) = pool.gather(l, &d.gather, b, d.width)?;
            let o = match &d.mask {
                Some(mask) => ops::scaled_dot_product_attention_masked(&q, &keys, &values, scale, mask)?,
                None => ops::scaled_dot_product_attention(&q, &keys, &values, scale, "")?,
            };
            outs.push(ops::reshape(&o, &[b, nh * hd])?);
        }
        if let Some(p) = &step.prefill {
            let (c, n) = (p.chunks, p.len);
            let rows = |a: &Array, heads: i32| -> Result<Array> {
                let a = ops::slice_axis(a, 0, b, b + c * n)?;
                Ok(ops::transpose(&ops::reshape(&a, &[c, n, heads, hd])?, &[0, 2, 1, 3])?)
            };
            let q = rows(&q, nh)?;
            let o = match &p.cached {
                None => ops::scaled_dot_product_attention(&q, &rows(&k, nkv)?, &rows(&v, nkv)?, scale, "causal")?,
                Some(cached) => {
                    let (keys, values) = pool.gather(l, &cached.gather, c, cached.width)?;
                    ops::scaled_dot_product_attention_masked(&q, &keys, &values, scale, &cached.mask)?
                }
            };
            outs.push(ops::reshape(&ops::transpose(&o, &[0, 2, 1, 3])?, &[c * n, nh * hd])?);
        }
        if outs.len() == 1 {
            return Ok(outs.pop().unwrap());
        }
        Ok(ops::concatenate(&outs.iter().collect::<Vec<_>>(), 0)?)
    }

    /// `[rows, heads * hd]` → `[rows, heads, 1, hd]`, normed, and rotated when `rotate` holds the
    /// step's rope table (or `Some(None)` on a GPU): every row is one token at its own position.
    fn heads(
        &self,
        x: &Array,
        heads: i32,
        norm: Option<&RmsNorm>,
        step: &StepInput,
        rotate: Option<Option<&Table>>,
    ) -> Result<Array> {
        let hd = self.cfg.head_dim as i32;
        let mut x = ops::reshape(x, &[step.rows as i32, heads, 1, hd])?;
        if let Some(norm) = norm {
            x = norm.forward(&x)?;
        }
        if let Some(table) = rotate {
            x = self.rope.apply(&x, &step.positions, table)?;
        }
        Ok(x)
    }

    /// Every weight array, for evaluation and memory accounting.
    pub fn arrays(&self) -> Vec<&Array> {
        let mut out = self.embed.0.arrays();
        for l in &self.layers {
            out.extend(l.qkv.arrays());
            out.extend(l.o.arrays());
            out.extend(l.mlp.arrays());
            out.extend([&l.input_norm.weight, &l.post_norm.weight]);
            out.extend(l.q_norm.iter().chain(l.k_norm.iter()).map(|n| &n.weight));
        }
        out.push(&self.norm.weight);
        if let Some(h) = &self.lm_head {
            out.extend(h.arrays());
        }
        out.extend(self.rope.freqs());
        out
    }

    /// Bytes of weights.
    pub fn weight_bytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }
}
