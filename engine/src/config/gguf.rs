//! The hyper-parameters of a GGUF file, read from its metadata (`general.architecture` and
//! `<arch>.*`), with what llama.cpp fixes in code rather than in the file (Gemma 3's and
//! gpt-oss's sliding layers, gpt-oss's clamp).

use std::path::Path;

use super::{
    Architecture, ExpertActivation, GemmaConfig, ModelConfig, MoeConfig, RopeScaling, SlidingWindow, families,
};
use crate::error::{EngineError, Result};
use crate::model::layers::QuantMode;

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
