//! The architecture-independent description of a decoder model, read from an mlx-community
//! `config.json` or from GGUF metadata. Everything the forward pass needs to know lives here.

use std::path::Path;

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::model::layers::QuantMode;

mod families;

/// The architectures this engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1-3 and SmolLM2.
    Llama,
    /// Mistral (Llama layout; sliding window not used at our context sizes).
    Mistral,
    /// Qwen2 / Qwen2.5: biases on q, k and v projections.
    Qwen2,
    /// Qwen3: RMS norms on q and k per head.
    Qwen3,
    /// Qwen3-MoE: Qwen3 attention, top-k routed experts in the sparse layers.
    Qwen3Moe,
    /// Mixtral: Mistral attention, top-2 routed experts in every layer.
    Mixtral,
    /// Phi-3 / Phi-3.5 / Phi-4-mini: fused qkv and gate_up in the checkpoint, partial rotary,
    /// LongRoPE.
    Phi3,
    /// Gemma 3 (text): interleaved sliding-window and global layers, (1 + w) norms before and
    /// after attention and MLP, scaled embeddings, GeLU-tanh MLP (see [`GemmaConfig`]).
    Gemma3,
    /// gpt-oss: routed experts with a clamped SwiGLU and biases, attention sinks, alternating
    /// sliding-window layers, YaRN rope.
    GptOss,
}

/// Comma-separated names of every supported architecture, for error messages.
pub const SUPPORTED: &str = "gemma3, gemma3_text, gpt_oss, llama, mistral, mixtral, phi3, qwen2, qwen3, qwen3_moe";

impl Architecture {
    /// From `model_type` (config.json) or `general.architecture` (GGUF).
    pub fn parse(name: &str) -> Result<Architecture> {
        match name {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            "qwen3" => Ok(Architecture::Qwen3),
            // GGUF spells it without the underscore.
            "qwen3_moe" | "qwen3moe" => Ok(Architecture::Qwen3Moe),
            "mixtral" => Ok(Architecture::Mixtral),
            "phi3" => Ok(Architecture::Phi3),
            // The multimodal checkpoint's text weights are the text model's (see `from_json`).
            "gemma3_text" | "gemma3" => Ok(Architecture::Gemma3),
            // llama.cpp's name (and the older "gptoss").
            "gpt_oss" | "gpt-oss" | "gptoss" => Ok(Architecture::GptOss),
            other => {
                Err(EngineError::UnsupportedArchitecture { found: other.to_string(), supported: SUPPORTED.into() })
            }
        }
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Qwen3Moe => "qwen3_moe",
            Architecture::Mixtral => "mixtral",
            Architecture::Phi3 => "phi3",
            Architecture::Gemma3 => "gemma3",
            Architecture::GptOss => "gpt_oss",
        }
    }
}

/// Routed experts: each token's MLP is the weighted sum of `top_k` of `num_experts` SwiGLU
/// experts, chosen by a linear router.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    /// Experts per sparse layer.
    pub num_experts: usize,
    /// Experts each token runs.
    pub top_k: usize,
    /// Width of one expert's MLP.
    pub intermediate_size: usize,
    /// Whether the chosen experts' router probabilities are renormalized to sum to 1.
    pub norm_topk_prob: bool,
    /// Per layer: whether it is sparse (the others keep a dense MLP of the model's
    /// `intermediate_size`).
    pub sparse: Vec<bool>,
    /// The experts' activation.
    pub activation: ExpertActivation,
}

/// What Gemma 3 adds to the llama layout.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmaConfig {
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2` (not `head_dim^-1/2`).
    pub query_pre_attn_scalar: f32,
    /// RoPE base of the sliding-window layers (the global ones use `rope_theta` and its scaling).
    pub rope_local_theta: f32,
}

/// Layers that attend only to the most recent keys (Gemma 3's local layers, gpt-oss's
/// alternate ones).
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    /// Keys a sliding-window layer sees behind each query, its own included.
    pub size: usize,
    /// Per layer: sliding-window or global.
    pub layers: Vec<bool>,
}

/// The activation of routed experts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertActivation {
    /// SwiGLU: `silu(gate) · up`.
    Silu,
    /// gpt-oss: the gate clamped above and the linear part on both sides at `limit`, then
    /// `(up + 1) · gate · sigmoid(1.702 · gate)`.
    ClampedSwiglu {
        /// The clamp.
        limit: f32,
    },
}

/// How rotary frequencies are scaled for long context.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Overall factor.
        factor: f32,
        /// Wavelengths longer than `original / low_freq_factor` are scaled fully.
        low_freq_factor: f32,
        /// Wavelengths shorter than `original / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The pre-training context length.
        original_max_position_embeddings: f32,
    },
    /// Explicit per-frequency divisors (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
    /// YaRN (gpt-oss): frequencies blended between interpolated and original across a ramp,
    /// and the rotated features scaled by `mscale`.
    Yarn {
        /// Context extension factor.
        factor: f32,
        /// The pre-training context length.
        original_max_position_embeddings: f32,
        /// Rotations above which frequencies are kept.
        beta_fast: f32,
        /// Rotations below which frequencies are interpolated.
        beta_slow: f32,
        /// `(0.1 · mscale · ln factor + 1) / (0.1 · mscale_all_dim · ln factor + 1)`.
        mscale: f32,
    },
    /// Phi-3's LongRoPE ("su"): per-frequency divisors, and the rotated features scaled by
    /// `mscale`. mlx-lm applies the long factors at every length; so does this engine, so that
    /// it answers like the reference.
    LongRope {
        /// Divisors, one per rotated pair.
        long_factor: Vec<f32>,
        /// `sqrt(1 + ln(max / original) / ln(original))` when the context was extended, else 1.
        mscale: f32,
    },
}

/// One module's own quantization: group size, bits, mode.
pub type ModuleQuant = (i32, i32, QuantMode);

/// Hyper-parameters of a decoder-only transformer.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Which architecture.
    pub arch: Architecture,
    /// Model width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Leading features of each head that RoPE rotates (Phi's partial rotary; else `head_dim`).
    pub rotary_dim: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Whether RoPE rotates interleaved pairs (GGUF llama rows before un-permuting use this).
    pub rope_traditional: bool,
    /// Longest context the model supports.
    pub max_position_embeddings: usize,
    /// Whether the output projection is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (Qwen2).
    pub attention_bias: bool,
    /// Per-head RMS norms on q and k (Qwen3).
    pub qk_norm: bool,
    /// Routed experts, for mixture-of-experts models.
    pub moe: Option<MoeConfig>,
    /// Gemma 3's extras, for Gemma 3.
    pub gemma: Option<GemmaConfig>,
    /// Sliding-window layers, if the model has any.
    pub sliding_window: Option<SlidingWindow>,
    /// EOS ids declared by config.json / GGUF metadata.
    pub eos_token_ids: Vec<u32>,
    /// BOS id, if declared.
    pub bos_token_id: Option<u32>,
    /// Default quantization (group size, bits) from config.json, if the model is quantized.
    pub quantization: Option<(i32, i32)>,
    /// Per-module quantization overrides: (module path, Some((group, bits)) or None = dense).
    pub quantization_overrides: Vec<(String, Option<ModuleQuant>)>,
    /// MLX's quantization mode of the quantized weights without an override.
    pub quant_mode: QuantMode,
}

fn get_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

fn get_f32(v: &Value, key: &str) -> Option<f32> {
    v.get(key).and_then(Value::as_f64).map(|x| x as f32)
}

/// An id or a list of ids, as `eos_token_id` may be either.
pub fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
        _ => vec![],
    }
}

impl ModelConfig {
    /// Parses an mlx-community / Hugging Face `config.json`.
    pub fn from_config_json(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::bad_model(path, format!("config.json is not valid JSON: {e}")))?;
        Self::from_json(&v, path)
    }

    /// Parses the JSON value of a `config.json` (the path is for messages).
    pub fn from_json(v: &Value, path: &Path) -> Result<ModelConfig> {
        let gemma_text;
        let v = match v.get("model_type").and_then(Value::as_str) {
            Some("gemma3" | "gemma3_text") => {
                gemma_text = families::gemma3_text_config(v);
                &gemma_text
            }
            _ => v,
        };
        let need = |key: &str| -> Result<usize> {
            get_usize(v, key)
                .ok_or_else(|| EngineError::bad_model(path, format!("config.json lacks the integer '{key}'")))
        };
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| EngineError::bad_model(path, "config.json lacks 'model_type'"))?;
        let arch = Architecture::parse(model_type)?;
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let num_kv_heads = get_usize(v, "num_key_value_heads").unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(EngineError::bad_model(
                path,
                format!("num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"),
            ));
        }
        // Phi-3 derives the head width from the model's, whatever else config.json says.
        let head_dim = match arch {
            Architecture::Phi3 => hidden_size / num_heads,
            _ => get_usize(v, "head_dim").unwrap_or(hidden_size / num_heads),
        };
        let rotary_dim = (head_dim as f64 * get_f32(v, "partial_rotary_factor").unwrap_or(1.0) as f64) as usize;
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
            return Err(EngineError::bad_model(
                path,
                format!(
                    "partial_rotary_factor gives {rotary_dim} rotated features of {head_dim}; need an even number, at least 2"
                ),
            ));
        }
        let rope_scaling = parse_rope_scaling(v, rotary_dim, path)?;
        let quant = v.get("quantization").or(v.get("quantization_config"));
        let (quantization, quantization_overrides, quant_mode) = parse_quantization(quant, path)?;
        let num_layers = need("num_hidden_layers")?;
        let moe = families::moe(arch, v, num_layers, path)?;
        let gemma = (arch == Architecture::Gemma3).then(|| families::gemma(v));
        let sliding_window = families::sliding_window(arch, v, num_layers, path)?;
        Ok(ModelConfig {
            arch,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            intermediate_size: need("intermediate_size")?,
            vocab_size: need("vocab_size")?,
            rms_norm_eps: get_f32(v, "rms_norm_eps").unwrap_or(1e-6),
            rope_theta: get_f32(v, "rope_theta").unwrap_or(10000.0),
            rope_scaling,
            rope_traditional: v.get("rope_traditional").and_then(Value::as_bool).unwrap_or(false),
            max_position_embeddings: get_usize(v, "max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            attention_bias: v
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(matches!(arch, Architecture::Qwen2 | Architecture::GptOss)),
            qk_norm: matches!(arch, Architecture::Qwen3 | Architecture::Qwen3Moe | Architecture::Gemma3),
            moe,
            gemma,
            sliding_window,
            eos_token_ids: id_list(v.get("eos_token_id")),
            bos_token_id: v.get("bos_token_id").and_then(Value::as_u64).map(|x| x as u32),
            quantization,
            quantization_overrides,
            quant_mode,
        })
    }

    /// The quantization (group size, bits) for one module path, e.g.
    /// `model.layers.3.mlp.down_proj`: its override if any, else the model default.
    pub fn quantization_for(&self, module: &str) -> Option<(i32, i32)> {
        match self.quantization_overrides.iter().find(|(path, _)| path == module) {
            Some((_, q)) => q.map(|(g, b, _)| (g, b)),
            None => self.quantization,
        }
    }

    /// The quantization mode of one module: its override's, else the model's.
    pub fn quant_mode_for(&self, module: &str) -> QuantMode {
        match self.quantization_overrides.iter().find(|(path, _)| path == module) {
            Some((_, Some((_, _, mode)))) => *mode,
            _ => self.quant_mode,
        }
    }

    /// The key/value heads share each query head group of this size.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

fn parse_rope_scaling(config: &Value, rotary_dim: usize, path: &Path) -> Result<RopeScaling> {
    let Some(v) = config.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = v.get("rope_type").or(v.get("type")).and_then(Value::as_str).unwrap_or("default");
    let factor = get_f32(v, "factor").unwrap_or(1.0);
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor,
            low_freq_factor: get_f32(v, "low_freq_factor").unwrap_or(1.0),
            high_freq_factor: get_f32(v, "high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: get_f32(v, "original_max_position_embeddings").unwrap_or(8192.0),
        }),
        "yarn" => {
            let get = |k: &str, d: f32| get_f32(v, k).unwrap_or(d);
            let m = |scale: f32| if factor <= 1.0 { 1.0 } else { 0.1 * scale * factor.ln() + 1.0 };
            Ok(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: get("original_max_position_embeddings", 4096.0),
                beta_fast: get("beta_fast", 32.0),
                beta_slow: get("beta_slow", 1.0),
                mscale: m(get("mscale", 1.0)) / m(get("mscale_all_dim", 0.0)),
            })
        }
        "longrope" | "su" => {
            let long_factor: Vec<f32> = v
                .get("long_factor")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .unwrap_or_default();
            if long_factor.len() != rotary_dim / 2 {
                return Err(EngineError::bad_model(
                    path,
                    format!(
                        "rope_scaling.long_factor has {} values; {} rotated features need {}",
                        long_factor.len(),
                        rotary_dim,
                        rotary_dim / 2
                    ),
                ));
            }
            let max = get_f32(config, "max_position_embeddings").unwrap_or(131072.0);
            let original = get_f32(config, "original_max_position_embeddings").unwrap_or(4096.0);
            let ratio = max / original;
            let mscale = if ratio <= 1.0 { 1.0 } else { (1.0 + ratio.ln() / original.ln()).sqrt() };
            Ok(RopeScaling::LongRope { long_factor, mscale })
        }
        other => Err(EngineError::bad_model(
            path,
            format!(
                "rope_scaling type '{other}' is not supported (supported: default, linear, llama3, longrope, yarn)"
            ),
        )),
    }
}

type Quant = (Option<(i32, i32)>, Vec<(String, Option<ModuleQuant>)>, QuantMode);

/// The default quantization, the per-module ones (mlx-lm writes a module's own dict, whose mode
/// is affine unless it says otherwise, or `false` for a module left dense) and the default mode.
fn parse_quantization(v: Option<&Value>, path: &Path) -> Result<Quant> {
    let Some(Value::Object(map)) = v else {
        return Ok((None, vec![], QuantMode::Affine));
    };
    let mode = |m: &serde_json::Map<String, Value>| -> Result<QuantMode> {
        match m.get("mode").and_then(Value::as_str) {
            None => Ok(QuantMode::Affine),
            Some(s) => QuantMode::parse(s).ok_or_else(|| {
                EngineError::bad_model(
                    path,
                    format!("quantization mode '{s}' is not supported (supported: affine, mxfp4, mxfp8, nvfp4)"),
                )
            }),
        }
    };
    let pair = |m: &serde_json::Map<String, Value>| -> Option<(i32, i32)> {
        Some((m.get("group_size")?.as_i64()? as i32, m.get("bits")?.as_i64()? as i32))
    };
    let mut overrides = Vec::new();
    for (k, v) in map {
        match v {
            Value::Object(m) => {
                if let Some((g, b)) = pair(m) {
                    overrides.push((k.clone(), Some((g, b, mode(m)?))));
                }
            }
            Value::Bool(false) => overrides.push((k.clone(), None)),
            _ => {}
        }
    }
    Ok((pair(map), overrides, mode(map)?))
}

/// Llama 3 frequency scaling: the per-dimension frequencies passed to `fast::rope`.
pub fn rope_freqs(cfg: &ModelConfig) -> Option<Vec<f32>> {
    let dims = cfg.rotary_dim;
    let base_freqs = (0..dims / 2).map(|i| cfg.rope_theta.powf(2.0 * i as f32 / dims as f32));
    match &cfg.rope_scaling {
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            Some(
                base_freqs
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI * f;
                        if wavelen > low_wavelen {
                            f * factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (original_max_position_embeddings / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            f / ((1.0 - smooth) / factor + smooth)
                        }
                    })
                    .collect(),
            )
        }
        RopeScaling::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, .. } => {
            Some(yarn_freqs(dims, cfg.rope_theta, *factor, *original_max_position_embeddings, *beta_fast, *beta_slow))
        }
        RopeScaling::Factors(factors) | RopeScaling::LongRope { long_factor: factors, .. } => {
            Some(base_freqs.zip(factors).map(|(f, k)| f * k).collect())
        }
        _ => None,
    }
}

/// YaRN's wavelengths, computed as mlx-lm computes them (the ramp's ends floored and ceiled).
fn yarn_freqs(dims: usize, base: f32, factor: f32, original: f32, beta_fast: f32, beta_slow: f32) -> Vec<f32> {
    let (d, base64) = (dims as f64, base as f64);
    let correction = |rotations: f32| {
        d * (original as f64 / (rotations as f64 * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base64.ln())
    };
    let low = correction(beta_fast).floor().max(0.0) as f32;
    let high = (correction(beta_slow).ceil() as f32).min(dims as f32 - 1.0);
    let high = if low == high { high + 0.001 } else { high };
    (0..dims / 2)
        .map(|i| {
            let extra = base.powf(2.0 * i as f32 / dims as f32);
            let inter = factor * extra;
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let keep = 1.0 - ramp;
            (inter * extra) / (inter * keep + extra * (1.0 - keep))
        })
        .collect()
}

/// The scale of the rotated features that LongRoPE and YaRN apply (1 for other ropes).
pub fn rope_mscale(cfg: &ModelConfig) -> f32 {
    match cfg.rope_scaling {
        RopeScaling::LongRope { mscale, .. } | RopeScaling::Yarn { mscale, .. } => mscale,
        _ => 1.0,
    }
}

/// Reads a GGUF metadata scalar as f64.
fn gguf_num(g: &mlx::Gguf, key: &str) -> Result<Option<f64>> {
    Ok(g.number(key))
}

/// Reads a GGUF metadata number as f32.
pub(crate) fn gguf_f32(g: &mlx::Gguf, key: &str) -> Result<Option<f32>> {
    Ok(gguf_num(g, key)?.map(|x| x as f32))
}

/// Reads a GGUF metadata string.
pub(crate) fn gguf_str(g: &mlx::Gguf, key: &str) -> Result<Option<String>> {
    Ok(g.string(key))
}

impl ModelConfig {
    /// Reads the hyper-parameters from GGUF metadata (`general.architecture` and `<arch>.*`).
    pub fn from_gguf(g: &mlx::Gguf, path: &Path) -> Result<ModelConfig> {
        let arch_name = gguf_str(g, "general.architecture")?
            .ok_or_else(|| EngineError::bad_model(path, "GGUF metadata lacks general.architecture"))?;
        let mut arch = Architecture::parse(&arch_name)?;
        let num = |key: &str| gguf_num(g, &format!("{arch_name}.{key}"));
        let need = |key: &str| -> Result<usize> {
            num(key)?
                .map(|x| x as usize)
                .ok_or_else(|| EngineError::bad_model(path, format!("GGUF metadata lacks {arch_name}.{key}")))
        };
        let hidden_size = need("embedding_length")?;
        let num_heads = need("attention.head_count")?;
        let num_kv_heads = num("attention.head_count_kv")?.map(|x| x as usize).unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(EngineError::bad_model(
                path,
                format!("head_count {num_heads} is not a multiple of head_count_kv {num_kv_heads}"),
            ));
        }
        let head_dim = num("attention.key_length")?.map(|x| x as usize).unwrap_or(hidden_size / num_heads);
        let vocab_size = match num("vocab_size")? {
            Some(v) => v as usize,
            None => match g.meta("tokenizer.ggml.tokens") {
                Some(mlx::GgufMeta::Strings(t)) => t.len(),
                _ => {
                    return Err(EngineError::bad_model(path, "GGUF metadata has neither vocab_size nor tokens"));
                }
            },
        };
        let rope_scaling = match gguf_str(g, &format!("{arch_name}.rope.scaling.type"))?.as_deref() {
            Some("linear") => RopeScaling::Linear { factor: num("rope.scaling.factor")?.unwrap_or(1.0) as f32 },
            // llama.cpp's YaRN: its default ramp (32, 1) unless the file names one, and the
            // features scaled by 0.1 · ln(factor) + 1.
            Some("yarn") => {
                let factor = num("rope.scaling.factor")?.unwrap_or(1.0) as f32;
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: num("rope.scaling.original_context_length")?.unwrap_or(4096.0)
                        as f32,
                    beta_fast: num("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0) as f32,
                    beta_slow: num("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0) as f32,
                    mscale: if factor <= 1.0 { 1.0 } else { 0.1 * factor.ln() + 1.0 },
                }
            }
            // LongRoPE's factors are tensors, read with the weights.
            Some("none" | "longrope" | "su") | None => RopeScaling::None,
            Some(other) => {
                return Err(EngineError::bad_model(path, format!("GGUF rope scaling '{other}' is not supported")));
            }
        };
        let eos = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .map(|k| gguf_num(g, k))
            .collect::<Result<Vec<_>>>()?;
        let mut eos_token_ids: Vec<u32> = eos.into_iter().flatten().map(|x| x as u32).collect();
        eos_token_ids.dedup();
        let num_layers = need("block_count")?;
        let intermediate_size = need("feed_forward_length")?;
        // llama.cpp writes Mixtral as a llama with experts; both it and qwen3moe renormalize the
        // chosen experts' weights.
        let moe = match num("expert_count")?.map(|x| x as usize).filter(|&n| n > 0) {
            Some(num_experts) => {
                if arch == Architecture::Llama {
                    arch = Architecture::Mixtral;
                }
                let m = MoeConfig {
                    num_experts,
                    top_k: need("expert_used_count")?,
                    intermediate_size: num("expert_feed_forward_length")?
                        .map(|x| x as usize)
                        .unwrap_or(intermediate_size),
                    norm_topk_prob: true,
                    sparse: vec![true; num_layers],
                    // llama.cpp fixes gpt-oss's clamp at 7, as its config does.
                    activation: if arch == Architecture::GptOss {
                        ExpertActivation::ClampedSwiglu { limit: 7.0 }
                    } else {
                        ExpertActivation::Silu
                    },
                };
                families::check_moe(&m, path)?;
                Some(m)
            }
            None if matches!(arch, Architecture::Qwen3Moe | Architecture::Mixtral | Architecture::GptOss) => {
                return Err(EngineError::bad_model(path, format!("GGUF metadata lacks {arch_name}.expert_count")));
            }
            None => None,
        };
        // llama.cpp fixes what Gemma 3's GGUF does not record: every sixth layer global, local
        // rope base 10000, and the score scale 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the
        // 62-layer 27B).
        let (gemma, sliding_window) = if arch == Architecture::Gemma3 {
            let qpas = if num_layers == 62 { hidden_size / num_heads } else { head_dim };
            let size = num("attention.sliding_window")?.map_or(512, |w| w as usize).max(1);
            (
                Some(GemmaConfig { query_pre_attn_scalar: qpas as f32, rope_local_theta: 10_000.0 }),
                Some(SlidingWindow { size, layers: (0..num_layers).map(|l| (l + 1) % 6 != 0).collect() }),
            )
        } else if arch == Architecture::GptOss {
            // llama.cpp's fixed pattern for gpt-oss: even layers slide, odd ones are global.
            let size = num("attention.sliding_window")?.map_or(128, |w| w as usize).max(1);
            (None, Some(SlidingWindow { size, layers: (0..num_layers).map(|l| l % 2 == 0).collect() }))
        } else {
            (None, None)
        };
        Ok(ModelConfig {
            arch,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim: num("rope.dimension_count")?.map_or(head_dim, |d| d as usize).min(head_dim),
            intermediate_size,
            vocab_size,
            rms_norm_eps: num("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6) as f32,
            rope_theta: num("rope.freq_base")?.unwrap_or(10000.0) as f32,
            rope_scaling,
            rope_traditional: false,
            max_position_embeddings: num("context_length")?.map(|x| x as usize).unwrap_or(4096),
            tie_word_embeddings: false,
            attention_bias: matches!(arch, Architecture::Qwen2 | Architecture::GptOss),
            qk_norm: matches!(arch, Architecture::Qwen3 | Architecture::Qwen3Moe | Architecture::Gemma3),
            moe,
            gemma,
            sliding_window,
            eos_token_ids,
            bos_token_id: gguf_num(g, "tokenizer.ggml.bos_token_id")?.map(|x| x as u32),
            quantization: None,
            quantization_overrides: vec![],
            quant_mode: QuantMode::Affine,
        })
    }
}
