//! Builds a [`Model`] from weight files: an mlx-community safetensors folder (single file or
//! shards with an index) or a GGUF file. GGUF tensors are renamed to the Hugging Face names first,
//! so one code path checks every shape against the config and assembles the layers.

use mlx::{Array, ArrayList, Dtype, ops};

use super::layers::{Embedding, Linear, QuantMode, RmsNorm, cast};
use super::moe::{Experts, Moe};
use super::tensors::expert_name;
pub(crate) use super::tensors::{Tensors, safetensors_folder};
use super::{Activation, Layer, Mlp, Model};
use crate::config::{Architecture, ModelConfig, MoeConfig, RopeScaling, rope_freqs, rope_mscale};
use crate::error::{EngineError, Result};
use crate::model::rope::Rope;

/// Whether quantized weights are expanded to float32 at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DenseMode {
    /// On the CPU backend, when the dense model fits [`LoadOptions::dense_budget_bytes`] (1 GiB):
    /// for a small model, batched float32 products (the BLAS shim) beat the bridge's quantized
    /// kernel. Past the budget the kernel runs them from the stored format: on a 1B model it
    /// decodes 2x faster than the expansion, in a seventh of the memory. On a GPU, never.
    #[default]
    Auto,
    /// Always keep the stored format (what mlx-lm does).
    Never,
    /// Always expand.
    Always,
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// See [`DenseMode`].
    pub dense: DenseMode,
    /// Largest float32 model [`DenseMode::Auto`] expands.
    pub dense_budget_bytes: usize,
    /// On the CPU, run norms, the gated activation and the decode rows' attention as the bridge's
    /// fused primitives (`mlx::fused`) rather than MLX's expansions into small operations (off
    /// only to measure the difference).
    pub fused: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { dense: DenseMode::Auto, dense_budget_bytes: 1 << 30, fused: true }
    }
}

struct Builder<'a> {
    t: Tensors,
    cfg: &'a ModelConfig,
    /// GGUF quantized tensors always use groups of 32 and carry their bits in the shapes.
    gguf: bool,
    dtype: Dtype,
    dense: bool,
    /// Expanded weights keep their packed form too ([`Linear::Hybrid`]): plain projections are
    /// left packed while layers are joined, and [`Builder::finish`] expands them.
    hybrid: bool,
    /// Norms as the CPU's fused primitive.
    fused: bool,
}

impl Builder<'_> {
    fn shape_error(&self, name: &str, found: &[i32], expected: String) -> EngineError {
        EngineError::bad_model(&self.t.origin, format!("tensor '{name}' has shape {found:?}, expected {expected}"))
    }

    /// A linear layer `[out, in]`, dense or quantized, with an optional bias.
    fn linear(&mut self, module: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let wname = format!("{module}.weight");
        let weight = self.t.need(&wname)?;
        let bias = if bias {
            let b = self.t.need(&format!("{module}.bias"))?;
            if b.shape() != [out as i32] {
                return Err(self.shape_error(&format!("{module}.bias"), &b.shape(), format!("[{out}]")));
            }
            Some(cast(b, self.dtype)?)
        } else {
            self.t.take(&format!("{module}.bias")).map(|b| cast(b, self.dtype)).transpose()?
        };
        let linear = match self.t.take(&format!("{module}.scales")) {
            None => {
                if weight.shape() != [out as i32, inp as i32] {
                    return Err(self.shape_error(&wname, &weight.shape(), format!("[{out}, {inp}]")));
                }
                Linear::dense(cast(weight, self.dtype)?, bias)
            }
            Some(scales) => {
                let (biases, group_size, bits, mode) = self.quantized(module, &weight, &scales, &[out as i32], inp)?;
                Linear::Quantized { weight, scales, biases, group_size, bits, mode, bias }
            }
        };
        if self.dense && !self.hybrid { linear.densify(self.dtype) } else { Ok(linear) }
    }

    /// A joined projection as the model keeps it: expanded with its packed form kept, when
    /// hybrid.
    fn finish(&self, linear: Linear) -> Result<Linear> {
        if self.hybrid { linear.densify_keeping_packed(self.dtype) } else { Ok(linear) }
    }

    /// Checks a quantized weight `[..lead, in * bits / 32]` and its scales `[..lead, groups]` and
    /// reads its offsets (affine mode): `(offsets, group size, bits, mode)`.
    fn quantized(
        &mut self,
        module: &str,
        weight: &Array,
        scales: &Array,
        lead: &[i32],
        inp: usize,
    ) -> Result<(Option<Array>, i32, i32, QuantMode)> {
        let wname = format!("{module}.weight");
        let (ws, ss) = (weight.shape(), scales.shape());
        let n = lead.len();
        let lead_s = lead.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        if ws.len() != n + 1 || ss.len() != n + 1 || ws[..n] != *lead || ss[..n] != *lead || ss[n] == 0 {
            return Err(self.shape_error(&wname, &ws, format!("[{lead_s}, packed] with scales [{lead_s}, groups]")));
        }
        // A GGUF file's types say it: MXFP4's scales are E8M0 bytes, Q4/Q8's are float16.
        let mode = match (self.gguf, scales.dtype()) {
            (true, Dtype::U8) => QuantMode::Mxfp4,
            (true, _) => QuantMode::Affine,
            (false, _) => self.cfg.quant_mode_for(module),
        };
        let biases = match mode {
            QuantMode::Affine => Some(self.t.need(&format!("{module}.biases"))?),
            _ => None,
        };
        let group_size =
            if self.gguf { 32 } else { self.cfg.quantization_for(module).map(|q| q.0).unwrap_or(inp as i32 / ss[n]) };
        if ss[n] * group_size != inp as i32 {
            return Err(self.shape_error(
                &format!("{module}.scales"),
                &ss,
                format!("[{lead_s}, {}] for {inp} inputs in groups of {group_size}", inp as i32 / group_size),
            ));
        }
        let bits = ws[n] * 32 / inp as i32;
        if ws[n] * 32 != bits * inp as i32 || ![2, 3, 4, 5, 6, 8].contains(&bits) {
            return Err(self.shape_error(&wname, &ws, format!("[{lead_s}, {inp} * bits / 32] for 2-8 bits")));
        }
        if let Some((_, b)) = self.cfg.quantization_for(module).filter(|_| !self.gguf)
            && b != bits
        {
            return Err(self.shape_error(&wname, &ws, format!("{bits}-bit packing to match the config's {b} bits")));
        }
        Ok((biases, group_size, bits, mode))
    }

    /// The stacked experts of one projection: `[experts, out, in]`, dense or quantized, with
    /// optional biases `[experts, out]`.
    fn experts(&mut self, module: &str, experts: usize, out: usize, inp: usize) -> Result<Linear> {
        let wname = format!("{module}.weight");
        let weight = self.t.need(&wname)?;
        let (e, o) = (experts as i32, out as i32);
        let bias = match self.t.take(&format!("{module}.bias")) {
            Some(b) if b.shape() != [e, o] => {
                return Err(self.shape_error(&format!("{module}.bias"), &b.shape(), format!("[{experts}, {out}]")));
            }
            b => b.map(|b| cast(b, self.dtype)).transpose()?,
        };
        let linear = match self.t.take(&format!("{module}.scales")) {
            None => {
                if weight.shape() != [e, o, inp as i32] {
                    return Err(self.shape_error(&wname, &weight.shape(), format!("[{experts}, {out}, {inp}]")));
                }
                Linear::dense(cast(weight, self.dtype)?, bias)
            }
            Some(scales) => {
                let (biases, group_size, bits, mode) = self.quantized(module, &weight, &scales, &[e, o], inp)?;
                Linear::Quantized { weight, scales, biases, group_size, bits, mode, bias }
            }
        };
        if self.dense { linear.densify(self.dtype) } else { Ok(linear) }
    }

    /// A layer's feed-forward block: SwiGLU, or routed experts when `moe` says it is sparse.
    fn mlp(&mut self, p: &str, moe: Option<&MoeConfig>) -> Result<Mlp> {
        let (h, inter) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let Some(m) = moe else {
            if self.cfg.arch == Architecture::Phi3 {
                let gate_up = self.linear(&format!("{p}.mlp.gate_up_proj"), 2 * inter, h, false)?;
                let down = self.linear(&format!("{p}.mlp.down_proj"), h, inter, false)?;
                return Ok(Mlp::Dense { gate_up, down, act: Activation::Silu });
            }
            let gate = self.linear(&format!("{p}.mlp.gate_proj"), inter, h, false)?;
            let up = self.linear(&format!("{p}.mlp.up_proj"), inter, h, false)?;
            let down = self.linear(&format!("{p}.mlp.down_proj"), h, inter, false)?;
            let act = if self.cfg.arch == Architecture::Gemma3 { Activation::GeluTanh } else { Activation::Silu };
            return Ok(Mlp::Dense { gate_up: fuse(vec![gate, up], 0)?, down, act });
        };
        let (e, mi) = (m.num_experts, m.intermediate_size);
        let router = self.linear(&format!("{p}.mlp.gate"), e, h, false)?;
        let gate = self.experts(&format!("{p}.mlp.switch_mlp.gate_proj"), e, mi, h)?;
        let up = self.experts(&format!("{p}.mlp.switch_mlp.up_proj"), e, mi, h)?;
        let down = self.experts(&format!("{p}.mlp.switch_mlp.down_proj"), e, h, mi)?;
        Ok(Mlp::Sparse(Moe {
            router,
            gate_up: Experts(fuse(vec![gate, up], 1)?),
            down: Experts(down),
            top_k: m.top_k as i32,
            intermediate: mi as i32,
            norm_topk_prob: m.norm_topk_prob,
            activation: m.activation,
        }))
    }

    fn norm(&mut self, name: &str, dim: usize) -> Result<RmsNorm> {
        let wname = format!("{name}.weight");
        let mut weight = self.t.need(&wname)?;
        if weight.shape() != [dim as i32] {
            return Err(self.shape_error(&wname, &weight.shape(), format!("[{dim}]")));
        }
        if self.cfg.arch == Architecture::Gemma3 && !self.gguf {
            // Gemma scales by (1 + w); added in the stored type, as mlx-lm does. llama.cpp's
            // converter adds the 1 before writing GGUF.
            weight = ops::add(&weight, &Array::full(&[1], 1.0, weight.dtype())?)?;
        }
        Ok(RmsNorm { weight: cast(weight, self.dtype)?, eps: self.cfg.rms_norm_eps, fused: self.fused })
    }
}

/// Joins projections that read the same input into one, so a layer runs one product instead of
/// three (q, k, v) or two (gate, up). Layers that cannot be joined (different quantization)
/// are run one by one and their outputs concatenated. `axis` is the output axis: 0 for a
/// matrix `[out, in]`, 1 for stacked experts `[experts, out, in]` (biases `[experts, out]`).
fn fuse(parts: Vec<Linear>, axis: i32) -> Result<Linear> {
    let all_dense = parts.iter().all(|p| matches!(p, Linear::Dense { .. }));
    let same_quant = parts.windows(2).all(|w| match (&w[0], &w[1]) {
        (
            Linear::Quantized { group_size: g1, bits: b1, mode: m1, .. },
            Linear::Quantized { group_size: g2, bits: b2, mode: m2, .. },
        ) => g1 == g2 && b1 == b2 && m1 == m2,
        _ => false,
    });
    let any_bias = parts.iter().any(|p| match p {
        Linear::Dense { bias, .. } | Linear::Quantized { bias, .. } => bias.is_some(),
        // Made only after joining.
        Linear::Stack(_) | Linear::Hybrid { .. } => true,
    });
    let all_bias = parts.iter().all(|p| match p {
        Linear::Dense { bias, .. } | Linear::Quantized { bias, .. } => bias.is_some(),
        Linear::Stack(_) | Linear::Hybrid { .. } => false,
    });
    if any_bias && !all_bias {
        return Ok(Linear::Stack(parts));
    }
    let cat = |xs: Vec<&Array>| -> Result<Array> { Ok(ops::concatenate(&xs, axis)?) };
    let bias = if all_bias {
        Some(cat(parts
            .iter()
            .map(|p| match p {
                Linear::Dense { bias, .. } | Linear::Quantized { bias, .. } => bias.as_ref().unwrap(),
                Linear::Stack(_) | Linear::Hybrid { .. } => unreachable!(),
            })
            .collect())?)
    } else {
        None
    };
    if all_dense {
        let w = cat(parts
            .iter()
            .map(|p| if let Linear::Dense { weight, .. } = p { weight } else { unreachable!() })
            .collect())?;
        return Ok(Linear::dense(w, bias));
    }
    if parts.len() > 1 && same_quant {
        let (mut ws, mut ss, mut bs) = (vec![], vec![], vec![]);
        let (mut g, mut b, mut m) = (0, 0, QuantMode::Affine);
        for p in &parts {
            if let Linear::Quantized { weight, scales, biases, group_size, bits, mode, .. } = p {
                ws.push(weight);
                ss.push(scales);
                bs.extend(biases.iter());
                (g, b, m) = (*group_size, *bits, *mode);
            }
        }
        let biases = if bs.is_empty() { None } else { Some(cat(bs)?) };
        return Ok(Linear::Quantized {
            weight: cat(ws)?,
            scales: cat(ss)?,
            biases,
            group_size: g,
            bits: b,
            mode: m,
            bias,
        });
    }
    Ok(Linear::Stack(parts))
}

/// Assembles the model from named tensors, checking every shape, and evaluates the weights so
/// that unreadable data fails here rather than in the first request.
pub(crate) fn build(
    t: Tensors,
    mut cfg: ModelConfig,
    gguf: bool,
    opts: &LoadOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Model> {
    let gpu = mlx::default_device_is_gpu();
    let dense = will_densify(&cfg, opts);
    let dtype = if gpu { model_dtype(&t) } else { Dtype::F32 };
    tracing::info!(arch = cfg.arch.name(), layers = cfg.num_layers, dense, ?dtype, "building model");
    let (h, hd, nh, nkv, vocab) = (cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size);
    let origin = t.origin.clone();
    let t = t.canonical_experts(cfg.moe.as_ref())?.text_only();
    if cfg.moe.is_some() {
        for (module, _) in &mut cfg.quantization_overrides {
            *module = expert_name(module);
        }
    }
    let fused = !gpu && opts.fused;
    // Within the budget the CPU keeps the packed weights beside the expansion: decode steps read
    // them with the quantized kernel, prompt chunks multiply the expansion.
    let hybrid = dense && opts.dense == DenseMode::Auto;
    let mut b = Builder { t, cfg: &cfg, gguf, dtype, dense, hybrid, fused };
    let linear = b.linear("model.embed_tokens", vocab, h, false)?;
    let embed = Embedding(b.finish(linear)?);
    let mut pending = ArrayList::of(embed.0.arrays());
    pending.eval()?;
    let bias = cfg.attention_bias;
    // Phi-3 checkpoints store q/k/v and gate/up already joined.
    let fused_checkpoint = cfg.arch == Architecture::Phi3;
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let qkv = if fused_checkpoint {
            b.linear(&format!("{p}.self_attn.qkv_proj"), (nh + 2 * nkv) * hd, h, bias)?
        } else {
            let q = b.linear(&format!("{p}.self_attn.q_proj"), nh * hd, h, bias)?;
            let k = b.linear(&format!("{p}.self_attn.k_proj"), nkv * hd, h, bias)?;
            let v = b.linear(&format!("{p}.self_attn.v_proj"), nkv * hd, h, bias)?;
            fuse(vec![q, k, v], 0)?
        };
        let qkv = b.finish(qkv)?;
        let o = b.linear(&format!("{p}.self_attn.o_proj"), h, nh * hd, false)?;
        let o = b.finish(o)?;
        let (q_norm, k_norm) = if cfg.qk_norm {
            (Some(b.norm(&format!("{p}.self_attn.q_norm"), hd)?), Some(b.norm(&format!("{p}.self_attn.k_norm"), hd)?))
        } else {
            (None, None)
        };
        let mlp = match b.mlp(&p, cfg.moe.as_ref().filter(|m| m.sparse[l]))? {
            Mlp::Dense { gate_up, down, act } => Mlp::Dense { gate_up: b.finish(gate_up)?, down: b.finish(down)?, act },
            sparse => sparse,
        };
        // Gemma norms the attention and MLP outputs too; its pre-MLP norm has its own name.
        let (post_norm, attn_out_norm, mlp_out_norm) = if cfg.gemma.is_some() {
            (
                b.norm(&format!("{p}.pre_feedforward_layernorm"), h)?,
                Some(b.norm(&format!("{p}.post_attention_layernorm"), h)?),
                Some(b.norm(&format!("{p}.post_feedforward_layernorm"), h)?),
            )
        } else {
            (b.norm(&format!("{p}.post_attention_layernorm"), h)?, None, None)
        };
        let sinks = match b.t.take(&format!("{p}.self_attn.sinks")) {
            Some(s) if s.shape() != [nh as i32] => {
                return Err(b.shape_error(&format!("{p}.self_attn.sinks"), &s.shape(), format!("[{nh}]")));
            }
            s => s.map(|s| cast(s, dtype)).transpose()?,
        };
        if cfg.arch == Architecture::GptOss && sinks.is_none() {
            return Err(EngineError::bad_model(&origin, format!("tensor '{p}.self_attn.sinks' is missing")));
        }
        let layer = Layer {
            qkv,
            sinks,
            o,
            q_norm,
            k_norm,
            input_norm: b.norm(&format!("{p}.input_layernorm"), h)?,
            post_norm,
            attn_out_norm,
            mlp_out_norm,
            mlp,
            sliding: cfg.sliding_window.as_ref().is_some_and(|w| w.layers[l]),
        };
        // Evaluate layer by layer: peak memory stays one layer above the final size, and a
        // truncated file fails at the tensor that is cut.
        pending = ArrayList::new();
        for a in
            [&layer.qkv, &layer.o].into_iter().flat_map(|l| l.arrays()).chain(layer.mlp.arrays()).chain(&layer.sinks)
        {
            pending.push(a);
        }
        pending.eval().map_err(|e| EngineError::bad_model(&origin, format!("layer {l}: {}", e.message)))?;
        layers.push(layer);
        progress(l + 1, cfg.num_layers);
    }
    let norm = b.norm("model.norm", h)?;
    // Gemma ties its output projection exactly when the checkpoint has none (as mlx-lm decides).
    let tied = match cfg.arch {
        Architecture::Gemma3 => !b.t.map.contains_key("lm_head.weight"),
        _ => cfg.tie_word_embeddings,
    };
    let lm_head = if tied {
        // Some tied checkpoints still ship a copy; it is the embedding, so drop it.
        for s in ["weight", "scales", "biases"] {
            b.t.take(&format!("lm_head.{s}"));
        }
        None
    } else if b.t.map.contains_key("lm_head.weight") {
        let head = b.linear("lm_head", vocab, h, false)?;
        Some(b.finish(head)?)
    } else if gguf {
        None // GGUF files omit `output` when the embedding is tied.
    } else {
        return Err(EngineError::bad_model(
            &origin,
            "tensor 'lm_head.weight' is missing and tie_word_embeddings is false",
        ));
    };
    let freqs = rope_freqs(&cfg);
    let rope_freqs = freqs.map(|f| Array::from_f32(&f, &[f.len() as i32])).transpose()?;
    let rope_scale = match cfg.rope_scaling {
        RopeScaling::Linear { factor } => 1.0 / factor,
        _ => 1.0,
    };
    let mut leftovers: Vec<_> = b.t.map.keys().cloned().collect();
    leftovers.sort();
    if !leftovers.is_empty() {
        tracing::debug!(?leftovers, "unused tensors");
    }
    // MLX's CPU build has no rope kernel: there the step's table is built once (see rope.rs).
    let mscale = rope_mscale(&cfg);
    let (rd, hd) = (cfg.rotary_dim as i32, cfg.head_dim as i32);
    let rope = Rope::new(rd, hd, cfg.rope_traditional, cfg.rope_theta, rope_scale, mscale, rope_freqs, !gpu)?;
    // Gemma's local layers rotate with their own base and no scaling.
    let rope_local = match &cfg.gemma {
        Some(g) => Some(Rope::new(rd, hd, cfg.rope_traditional, g.rope_local_theta, 1.0, 1.0, None, !gpu)?),
        None => None,
    };
    let (embed_scale, attn_scale) = match &cfg.gemma {
        Some(g) => (Some(round_to_bf16((cfg.hidden_size as f32).sqrt())), g.query_pre_attn_scalar.powf(-0.5)),
        None => (None, (cfg.head_dim as f32).powf(-0.5)),
    };
    let mut model = Model {
        cfg,
        embed,
        layers,
        norm,
        lm_head,
        dtype,
        rope,
        rope_local,
        embed_scale,
        attn_scale,
        fused,
        layer_nodes: fused,
    };
    ArrayList::of(model.arrays()).eval()?;
    if !gpu {
        model.pin_packed()?;
    }
    Ok(model)
}

/// `x` rounded to the nearest bfloat16 (ties to even): Gemma's embedding scale is that constant.
fn round_to_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// The activation type on a GPU: the type of the embedding's scales (quantized) or of the
/// embedding itself (dense). Norm weights do not decide it: GGUF stores them as float32 even when
/// every matrix is quantized, and float32 activations would double a GPU step's memory traffic
/// and keep MLX off its half-precision attention kernels.
fn model_dtype(t: &Tensors) -> Dtype {
    for name in ["model.embed_tokens.scales", "model.embed_tokens.weight", "model.norm.weight"] {
        if let Some(a) = t.map.get(name)
            && a.dtype().is_float()
        {
            return a.dtype();
        }
    }
    Dtype::F32
}

/// Whether [`build`] expands quantized weights to float32 under these options.
pub fn will_densify(cfg: &ModelConfig, opts: &LoadOptions) -> bool {
    match opts.dense {
        DenseMode::Always => true,
        DenseMode::Never => false,
        DenseMode::Auto => !mlx::default_device_is_gpu() && dense_f32_bytes(cfg) <= opts.dense_budget_bytes,
    }
}

/// Bytes of the model with every weight as float32.
pub fn dense_f32_bytes(cfg: &ModelConfig) -> usize {
    let (h, hd, nh, nkv, inter, v) =
        (cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size, cfg.vocab_size);
    let attention = h * hd * (2 * nh + 2 * nkv);
    let mlps: usize = (0..cfg.num_layers)
        .map(|l| match cfg.moe.as_ref().filter(|m| m.sparse[l]) {
            Some(m) => m.num_experts * (3 * h * m.intermediate_size + h),
            None => 3 * h * inter,
        })
        .sum();
    let heads = if cfg.tie_word_embeddings { 1 } else { 2 };
    4 * (cfg.num_layers * attention + mlps + heads * v * h)
}
