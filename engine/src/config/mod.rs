//! The architecture-independent description of a decoder model, read from an mlx-community
//! `config.json` or from GGUF metadata. Everything the forward pass needs to know lives here.

use std::path::Path;

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::model::layers::QuantMode;

mod families;
mod gguf;
mod rope;

pub(crate) use gguf::{gguf_f32, gguf_str};
pub use rope::{RopeScaling, rope_freqs, rope_mscale};

use rope::parse_rope_scaling;

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
