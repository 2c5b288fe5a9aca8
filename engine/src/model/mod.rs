//! The decoder-only transformer shared by llama, mistral, qwen2, qwen3 and their mixture-of-experts
//! variants (they differ in q/k/v biases, per-head q/k norms, RoPE scaling and dense or routed
//! MLPs, which [`ModelConfig`] records), and its batched forward pass.
//!
//! A forward pass runs one [`StepInput`] — the next token of every decoding sequence and a chunk
//! of every prefilling one — as one set of rows through every projection, so each weight is read
//! once per step for the whole batch, and attention as one batched call for the decode rows and
//! one for the chunks, each row reading its own slots of the shared [`KvPool`].

mod decode_layers;
mod gguf;
pub mod layers;
pub mod loader;
pub mod moe;
pub mod rope;
pub mod step;
mod tensors;

use mlx::{Array, Dtype, ops};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::KvPool;
pub(crate) use gguf::open as gguf_tensors;
use layers::{Embedding, Linear, RmsNorm};
use rope::{Rope, Table};
use step::WindowMasks;
pub use step::{DecodeRow, PrefillRow, Shapes, StepInput, TokenSource};

/// One decoder layer.
pub struct Layer {
    /// Fused q, k and v projection: output columns are `[q | k | v]`.
    pub qkv: Linear,
    /// Output projection.
    pub o: Linear,
    /// Per-head attention sink logits (gpt-oss).
    pub sinks: Option<Array>,
    /// Per-head norm on queries (Qwen3).
    pub q_norm: Option<RmsNorm>,
    /// Per-head norm on keys (Qwen3).
    pub k_norm: Option<RmsNorm>,
    /// Norm before attention.
    pub input_norm: RmsNorm,
    /// Norm before the MLP.
    pub post_norm: RmsNorm,
    /// Norm of the attention output before the residual add (Gemma 3).
    pub attn_out_norm: Option<RmsNorm>,
    /// Norm of the MLP output before the residual add (Gemma 3).
    pub mlp_out_norm: Option<RmsNorm>,
    /// Whether attention sees only the last `sliding_window` keys (Gemma 3's local layers).
    pub sliding: bool,
    /// The feed-forward block.
    pub mlp: Mlp,
}

/// The gate's activation in a gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU).
    Silu,
    /// GeLU, tanh approximation (Gemma).
    GeluTanh,
}

impl Activation {
    fn apply(self, x: &Array) -> Result<Array> {
        match self {
            Activation::Silu => Ok(ops::silu(x)?),
            // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))), in MLX's order of operations.
            Activation::GeluTanh => {
                let c = |v: f32| -> Result<Array> { Ok(ops::astype(&Array::scalar_f32(v)?, x.dtype())?) };
                let cube = ops::multiply(&ops::multiply(x, x)?, x)?;
                let inner = ops::add(x, &ops::multiply(&c(0.044715)?, &cube)?)?;
                let t = ops::tanh(&ops::multiply(&c((2.0f64 / std::f64::consts::PI).sqrt() as f32)?, &inner)?)?;
                Ok(ops::multiply(&ops::multiply(&c(0.5)?, x)?, &ops::add(&c(1.0)?, &t)?)?)
            }
        }
    }
}

/// A layer's feed-forward block.
pub enum Mlp {
    /// A gated MLP: `down(act(gate) · up)`.
    Dense {
        /// Fused gate and up projections: output columns are `[gate | up]`.
        gate_up: Linear,
        /// Down projection.
        down: Linear,
        /// The gate's activation.
        act: Activation,
    },
    /// Routed experts.
    Sparse(moe::Moe),
}

impl Mlp {
    /// `x` `[n, hidden]` → `[n, hidden]`; `fused` runs the gated activation as the CPU's fused
    /// primitive.
    pub fn forward(&self, x: &Array, fused: bool) -> Result<Array> {
        match self {
            Mlp::Dense { gate_up, down, act } => {
                let gu = gate_up.forward(x)?;
                if fused {
                    let gate = match act {
                        Activation::Silu => mlx::fused::Gate::Silu,
                        Activation::GeluTanh => mlx::fused::Gate::GeluTanh,
                    };
                    return down.forward(&mlx::fused::gated_act(&gu, gate)?);
                }
                let inter = gate_up.out_features() / 2;
                let gate = ops::slice_axis(&gu, 1, 0, inter)?;
                let up = ops::slice_axis(&gu, 1, inter, 2 * inter)?;
                down.forward(&ops::multiply(&act.apply(&gate)?, &up)?)
            }
            Mlp::Sparse(moe) => moe.forward(x),
        }
    }

    /// Every array this block holds.
    pub fn arrays(&self) -> Vec<&Array> {
        match self {
            Mlp::Dense { gate_up, down, .. } => gate_up.arrays().into_iter().chain(down.arrays()).collect(),
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
    /// Rotary embedding (of the global layers, where they differ).
    pub rope: Rope,
    /// Rotary embedding of the sliding-window layers, when it differs (Gemma 3).
    pub rope_local: Option<Rope>,
    /// Factor the embeddings are multiplied by (Gemma: √hidden, rounded to bfloat16).
    pub embed_scale: Option<f32>,
    /// Attention score scale.
    pub attn_scale: f32,
    /// Norms, gated activations and the decode rows' attention run as the CPU's fused
    /// primitives (`mlx::fused`): float32 on the CPU.
    pub fused: bool,
    /// With `fused`, decode steps on packed weights run each layer as three nodes
    /// ([`Model::decode_layers`]); tests turn it off to compare with the separate nodes.
    pub layer_nodes: bool,
}

impl Model {
    /// Moves the packed weights of the embedding, the output projection and every layer's
    /// attention and dense MLP projections into 2 MB pages (the CPU: see [`Linear::pin_packed`]);
    /// routed experts stay where they are. The old buffers go back to the system after each
    /// layer, so the copies add one layer's weights at most.
    pub fn pin_packed(&mut self) -> Result<()> {
        self.embed.0.pin_packed()?;
        if let Some(head) = &mut self.lm_head {
            head.pin_packed()?;
        }
        mlx::clear_cache();
        for layer in &mut self.layers {
            layer.qkv.pin_packed()?;
            layer.o.pin_packed()?;
            if let Mlp::Dense { gate_up, down, .. } = &mut layer.mlp {
                gate_up.pin_packed()?;
                down.pin_packed()?;
            }
            mlx::clear_cache();
        }
        Ok(())
    }

    /// An empty KV pool for this model, holding at most `limit_bytes` (none: unbounded).
    /// Sliding-window layers get a pool of their own (see [`KvPool::split`]); with the CPU's
    /// fused layers, each layer's keys and values share one buffer (see [`KvPool::joined`]).
    pub fn new_pool(&self, limit_bytes: Option<usize>) -> KvPool {
        let (kvh, hd) = (self.cfg.num_kv_heads, self.cfg.head_dim);
        let pool = match &self.cfg.sliding_window {
            Some(w) => KvPool::split(&w.layers, w.size, kvh, hd, self.dtype, limit_bytes),
            None => KvPool::new(self.cfg.num_layers, kvh, hd, self.dtype, limit_bytes),
        };
        if self.fused { pool.joined() } else { pool }
    }

    /// Bytes of KV cache one more token takes: in every layer but the sliding-window ones, whose
    /// cache is bounded by the window (see [`KvPool::split`]).
    pub fn kv_bytes_per_token(&self) -> usize {
        let sliding = self.cfg.sliding_window.as_ref().map_or(0, |w| w.layers.iter().filter(|&&s| s).count());
        (self.cfg.num_layers - sliding) * 2 * self.cfg.num_kv_heads * self.cfg.head_dim * self.dtype.size()
    }

    /// Runs one step and returns the logits `[n, vocab]` (float32) of the rows
    /// [`StepInput::build`] marked (decode rows, then chunks that asked), or `None` when none did.
    /// The step's keys and values go into `pool`; nothing is evaluated yet.
    pub fn forward(&self, pool: &mut KvPool, step: &StepInput) -> Result<Option<Array>> {
        if let Some(logits) = self.decode_layers(pool, step)? {
            return Ok(Some(logits));
        }
        let Some(last) = self.hidden(pool, step)? else { return Ok(None) };
        let logits = match &self.lm_head {
            Some(head) => head.forward(&last)?,
            None => self.embed.as_linear(&last)?,
        };
        Ok(Some(layers::cast(logits, Dtype::F32)?))
    }

    /// The step's token embeddings `[rows, hidden]` (scaled, for Gemma).
    fn embed_rows(&self, step: &StepInput) -> Result<Array> {
        let x = self.embed.forward(&step.ids, self.dtype)?;
        match self.embed_scale {
            Some(s) => Ok(ops::multiply(&x, &ops::astype(&Array::scalar_f32(s)?, self.dtype)?)?),
            None => Ok(x),
        }
    }

    /// Runs one step like [`Model::forward`] but returns the final-norm hidden states
    /// `[n, hidden]` (the activation type) of the marked rows: what embedding models pool.
    pub fn hidden(&self, pool: &mut KvPool, step: &StepInput) -> Result<Option<Array>> {
        let mut x = self.embed_rows(step)?;
        // A step of decode rows only, fused, rotates and masks inside its attention nodes: the
        // step's rope tables and window masks would be built for nothing.
        let fused_only = self.fused && step.prefill.is_none() && self.rope.cpu_params().is_some();
        let table = |r: &Rope| if fused_only { Ok(None) } else { r.table(&step.positions) };
        let global = (&self.rope, table(&self.rope)?);
        let local = match &self.rope_local {
            Some(r) => Some((r, table(r)?)),
            None => None,
        };
        // The masks of the sliding-window layers: over their own slots when the pool keeps
        // them apart, else over every slot.
        let windows = match (&self.cfg.sliding_window, &step.local) {
            _ if fused_only => None,
            (Some(w), Some(local)) => Some(local.window_masks(w.size)?),
            (Some(w), None) => Some(step::window_masks(step.decode.as_ref(), step.prefill.as_ref(), w.size)?),
            (None, _) => None,
        };
        // Each residual add is left to the next norm, which does both in one node when fused.
        let mut pending: Option<Array> = None;
        for (l, layer) in self.layers.iter().enumerate() {
            let (rope, table) = match (&local, layer.sliding) {
                (Some((r, t)), true) => (*r, t.as_ref()),
                _ => (global.0, global.1.as_ref()),
            };
            let masks = windows.as_ref().filter(|_| layer.sliding);
            let h = match pending.take() {
                Some(m) => {
                    let (sum, h) = layer.input_norm.add_forward(&x, &m)?;
                    x = sum;
                    h
                }
                None => layer.input_norm.forward(&x)?,
            };
            let mut attn = layer.o.forward(&self.attention(l, layer, &h, pool, step, rope, table, masks)?)?;
            if let Some(n) = &layer.attn_out_norm {
                attn = n.forward(&attn)?;
            }
            let (sum, h) = layer.post_norm.add_forward(&x, &attn)?;
            x = sum;
            let mut m = layer.mlp.forward(&h, self.fused)?;
            if let Some(n) = &layer.mlp_out_norm {
                m = n.forward(&m)?;
            }
            pending = Some(m);
        }
        let Some(rows) = &step.logits_rows else { return Ok(None) };
        let pick = |a: Array| -> Result<Array> { if step.every_row { Ok(a) } else { Ok(ops::take(&a, rows, 0)?) } };
        let x = pick(x)?;
        Ok(Some(match pending {
            Some(m) => self.norm.add_forward(&x, &pick(m)?)?.1,
            None => self.norm.forward(&x)?,
        }))
    }

    /// What the CPU's fused attention of the decode rows `d` of `layer` reads.
    #[allow(clippy::too_many_arguments)]
    fn decode_spec<'a>(
        &self,
        layer: &'a Layer,
        qkv: &'a Array,
        kv: &'a Array,
        step: &'a StepInput,
        write: &'a Array,
        d: &'a step::DecodeAttention,
        (inv_freqs, rope_dims, traditional, pos_scale, mscale): (&'a Array, i32, bool, f32, f32),
    ) -> mlx::fused::DecodeAttention<'a> {
        let cfg = &self.cfg;
        let window = match (&cfg.sliding_window, layer.sliding) {
            (Some(w), true) => w.size as i32,
            _ => 0,
        };
        mlx::fused::DecodeAttention {
            qkv,
            kv,
            positions: &step.positions,
            write,
            gather: &d.gather,
            lens: &d.lens,
            inv_freqs,
            q_norm: layer.q_norm.as_ref().map(|n| (&n.weight, n.eps)),
            k_norm: layer.k_norm.as_ref().map(|n| (&n.weight, n.eps)),
            sinks: layer.sinks.as_ref(),
            heads: cfg.num_heads as i32,
            kv_heads: cfg.num_kv_heads as i32,
            head_dim: cfg.head_dim as i32,
            rope_dims,
            traditional,
            pos_scale,
            mscale,
            scale: self.attn_scale,
            window,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        layer: &Layer,
        h: &Array,
        pool: &mut KvPool,
        step: &StepInput,
        rope: &Rope,
        table: Option<&Table>,
        window: Option<&WindowMasks>,
    ) -> Result<Array> {
        let cfg = &self.cfg;
        let (hd, nh, nkv) = (cfg.head_dim as i32, cfg.num_heads as i32, cfg.num_kv_heads as i32);
        let qkv = layer.qkv.forward(h)?;
        let (write, decode, prefill) = step.for_layer(layer.sliding);
        let mut outs = Vec::with_capacity(2);
        // The decode rows as one fused node on the CPU; the chunks (if any) as below.
        let fused = decode.filter(|_| self.fused && pool.joint_buffer(l).is_some()).zip(rope.cpu_params());
        if let Some((d, cpu_rope)) = fused {
            let kv = pool.joint_buffer(l).expect("checked above");
            let (o, kv) = mlx::fused::decode_attention(&self.decode_spec(layer, &qkv, kv, step, write, d, cpu_rope))?;
            pool.set_joint_buffer(l, kv);
            if prefill.is_none() {
                return Ok(o);
            }
            outs.push(o);
        }
        let rotate = Some((rope, table));
        let q = self.heads(&ops::slice_axis(&qkv, 1, 0, nh * hd)?, nh, layer.q_norm.as_ref(), step, rotate)?;
        let k =
            self.heads(&ops::slice_axis(&qkv, 1, nh * hd, (nh + nkv) * hd)?, nkv, layer.k_norm.as_ref(), step, rotate)?;
        let v = self.heads(&ops::slice_axis(&qkv, 1, (nh + nkv) * hd, (nh + 2 * nkv) * hd)?, nkv, None, step, None)?;
        match fused {
            // The decode rows' keys are written: write the chunks' only.
            Some((d, _)) => {
                let (b, r) = (d.rows, step.rows as i32);
                let chunk = |a: &Array| ops::slice_axis(a, 0, b, r);
                pool.write(l, &chunk(write)?, &chunk(&k)?, &chunk(&v)?)?;
            }
            None => pool.write(l, write, &k, &v)?,
        }
        let scale = self.attn_scale;
        // Every attention call of the layer, with its sinks when it has them.
        let sdpa = |q: &Array, k: &Array, v: &Array, mode: &str, mask: Option<&Array>| -> Result<Array> {
            Ok(match (&layer.sinks, mask) {
                (Some(s), mask) => ops::scaled_dot_product_attention_sinks(q, k, v, scale, mode, mask, s)?,
                (None, Some(m)) => ops::scaled_dot_product_attention_masked(q, k, v, scale, m)?,
                (None, None) => ops::scaled_dot_product_attention(q, k, v, scale, mode)?,
            })
        };
        let mut b = fused.map_or(0, |(d, _)| d.rows);
        if let Some(d) = decode.filter(|_| fused.is_none()) {
            b = d.rows;
            let q = ops::slice_axis(&q, 0, 0, b)?;
            let (keys, values) = pool.gather(l, &d.gather, b, d.width)?;
            let mask = window.and_then(|w| w.decode.as_ref()).or(d.mask.as_ref());
            let o = sdpa(&q, &keys, &values, "", mask)?;
            outs.push(ops::reshape(&o, &[b, nh * hd])?);
        }
        if let Some(p) = prefill {
            let (c, n) = (p.chunks, p.len);
            let rows = |a: &Array, heads: i32| -> Result<Array> {
                let a = ops::slice_axis(a, 0, b, b + c * n)?;
                Ok(ops::transpose(&ops::reshape(&a, &[c, n, heads, hd])?, &[0, 2, 1, 3])?)
            };
            let q = rows(&q, nh)?;
            let window = window.and_then(|w| w.prefill.as_ref());
            let o = match &p.cached {
                None => sdpa(&q, &rows(&k, nkv)?, &rows(&v, nkv)?, "causal", window)?,
                Some(cached) => {
                    let (keys, values) = pool.gather(l, &cached.gather, c, cached.width)?;
                    sdpa(&q, &keys, &values, "", Some(window.unwrap_or(&cached.mask)))?
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
    /// rope and its step table (`None` on a GPU): every row is one token at its own position.
    fn heads(
        &self,
        x: &Array,
        heads: i32,
        norm: Option<&RmsNorm>,
        step: &StepInput,
        rotate: Option<(&Rope, Option<&Table>)>,
    ) -> Result<Array> {
        let hd = self.cfg.head_dim as i32;
        let mut x = ops::reshape(x, &[step.rows as i32, heads, 1, hd])?;
        if let Some(norm) = norm {
            x = norm.forward(&x)?;
        }
        if let Some((rope, table)) = rotate {
            x = rope.apply(&x, &step.positions, table)?;
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
            out.extend(l.attn_out_norm.iter().chain(l.mlp_out_norm.iter()).map(|n| &n.weight));
            out.extend(l.q_norm.iter().chain(l.k_norm.iter()).map(|n| &n.weight));
            out.extend(&l.sinks);
        }
        out.push(&self.norm.weight);
        if let Some(h) = &self.lm_head {
            out.extend(h.arrays());
        }
        out.extend(self.rope.freqs());
        out.extend(self.rope_local.as_ref().and_then(Rope::freqs));
        out
    }

    /// Bytes of weights.
    pub fn weight_bytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }
}
