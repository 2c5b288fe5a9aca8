//! The hyper-parameters only some families have, read from `config.json`: routed experts
//! (Qwen3-MoE, Mixtral, gpt-oss), sliding-window layers (Gemma 3, gpt-oss) and Gemma 3's own
//! (including the multimodal checkpoint's nested `text_config`).

use std::path::Path;

use serde_json::Value;

use super::{Architecture, ExpertActivation, GemmaConfig, MoeConfig, SlidingWindow, get_f32, get_usize};
use crate::error::{EngineError, Result};

fn need(v: &Value, key: &str, path: &Path) -> Result<usize> {
    get_usize(v, key).ok_or_else(|| EngineError::bad_model(path, format!("config.json lacks the integer '{key}'")))
}

/// The routed experts of a mixture-of-experts architecture; `None` for dense ones.
pub(super) fn moe(arch: Architecture, v: &Value, num_layers: usize, path: &Path) -> Result<Option<MoeConfig>> {
    let m = match arch {
        Architecture::Qwen3Moe => {
            let step = get_usize(v, "decoder_sparse_step").unwrap_or(1).max(1);
            let dense_only: Vec<usize> = v
                .get("mlp_only_layers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect())
                .unwrap_or_default();
            let num_experts = need(v, "num_experts", path)?;
            MoeConfig {
                num_experts,
                top_k: need(v, "num_experts_per_tok", path)?,
                intermediate_size: need(v, "moe_intermediate_size", path)?,
                norm_topk_prob: v.get("norm_topk_prob").and_then(Value::as_bool).unwrap_or(false),
                sparse: (0..num_layers)
                    .map(|l| !dense_only.contains(&l) && num_experts > 0 && (l + 1) % step == 0)
                    .collect(),
                activation: ExpertActivation::Silu,
            }
        }
        // Mixtral and gpt-oss take the softmax over the chosen experts' logits: the same as
        // renormalizing the chosen probabilities of the softmax over all of them.
        Architecture::Mixtral | Architecture::GptOss => MoeConfig {
            num_experts: need(v, "num_local_experts", path)?,
            top_k: need(v, "num_experts_per_tok", path)?,
            intermediate_size: need(v, "intermediate_size", path)?,
            norm_topk_prob: true,
            sparse: vec![true; num_layers],
            activation: if arch == Architecture::GptOss {
                ExpertActivation::ClampedSwiglu { limit: get_f32(v, "swiglu_limit").unwrap_or(7.0) }
            } else {
                ExpertActivation::Silu
            },
        },
        _ => return Ok(None),
    };
    check_moe(&m, path)?;
    Ok(Some(m))
}

/// Refuses a top-k the experts cannot fill.
pub(super) fn check_moe(m: &MoeConfig, path: &Path) -> Result<()> {
    if m.top_k == 0 || m.top_k > m.num_experts {
        return Err(EngineError::bad_model(
            path,
            format!("num_experts_per_tok {} must be between 1 and the {} experts", m.top_k, m.num_experts),
        ));
    }
    Ok(())
}

/// Which layers slide over how many keys. Newer configs list each layer's kind (`layer_types`);
/// older Gemma ones give the period (every n-th layer is global); gpt-oss alternates, sliding
/// first, as mlx-lm assumes when the list is missing.
pub(super) fn sliding_window(
    arch: Architecture,
    v: &Value,
    num_layers: usize,
    path: &Path,
) -> Result<Option<SlidingWindow>> {
    let default_size = match arch {
        Architecture::Gemma3 => 512,
        Architecture::GptOss => 128,
        _ => return Ok(None),
    };
    let size = get_usize(v, "sliding_window").unwrap_or(default_size);
    if size == 0 {
        return Err(EngineError::bad_model(path, "sliding_window must be at least 1"));
    }
    let layers = match v.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            if types.len() != num_layers {
                return Err(EngineError::bad_model(
                    path,
                    format!("layer_types lists {} layers; the model has {num_layers}", types.len()),
                ));
            }
            types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect()
        }
        None if arch == Architecture::GptOss => (0..num_layers).map(|l| l % 2 == 0).collect(),
        None => {
            let period = get_usize(v, "sliding_window_pattern").unwrap_or(6).max(1);
            (0..num_layers).map(|l| (l + 1) % period != 0).collect()
        }
    };
    Ok(Some(SlidingWindow { size, layers }))
}

/// Gemma 3's attention scale and local rope base.
pub(super) fn gemma(v: &Value) -> GemmaConfig {
    for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if v.get(key).is_some_and(|x| !x.is_null()) {
            tracing::warn!(key, "Gemma 3 soft-capping is ignored, as mlx-lm ignores it");
        }
    }
    GemmaConfig {
        query_pre_attn_scalar: get_f32(v, "query_pre_attn_scalar").unwrap_or(256.0),
        rope_local_theta: get_f32(v, "rope_local_base_freq").unwrap_or(10_000.0),
    }
}

/// A Gemma 3 config with every key the text model reads: the multimodal checkpoint's
/// `text_config` (its vocabulary size and EOS ids from the top level), and mlx-lm's defaults for
/// keys Hugging Face leaves out.
pub(super) fn gemma3_text_config(v: &Value) -> Value {
    let mut text = match v.get("text_config") {
        Some(Value::Object(t)) if v.get("model_type").and_then(Value::as_str) == Some("gemma3") => {
            let mut t = t.clone();
            for key in ["vocab_size", "eos_token_id", "bos_token_id", "quantization", "quantization_config"] {
                if let Some(x) = v.get(key).filter(|_| !t.contains_key(key)) {
                    t.insert(key.into(), x.clone());
                }
            }
            t.entry("num_attention_heads").or_insert(8.into());
            t.entry("num_key_value_heads").or_insert(4.into());
            t.entry("vocab_size").or_insert(262208.into());
            t
        }
        _ => v.as_object().cloned().unwrap_or_default(),
    };
    let defaults = serde_json::json!({
        "hidden_size": 1152, "num_hidden_layers": 26, "intermediate_size": 6912,
        "num_attention_heads": 4, "head_dim": 256, "rms_norm_eps": 1.0e-6, "vocab_size": 262144,
        "num_key_value_heads": 1, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
        "query_pre_attn_scalar": 256, "sliding_window": 512, "sliding_window_pattern": 6,
        "max_position_embeddings": 32768, "tie_word_embeddings": true,
    });
    for (k, d) in defaults.as_object().unwrap() {
        text.entry(k.clone()).or_insert(d.clone());
    }
    text.insert("model_type".into(), "gemma3_text".into());
    Value::Object(text)
}
