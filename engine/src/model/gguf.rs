//! GGUF files as the loader's named tensors: llama.cpp's tensor names mapped to Hugging Face's
//! (experts included), and llama.cpp's permutation of llama q/k rows undone.

use std::collections::HashMap;
use std::path::Path;

use mlx::{Array, ops};

use super::loader::Tensors;
use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{EngineError, Result};

/// GGUF tensor names → Hugging Face names.
fn hf_name(gguf: &str, arch: Architecture) -> Option<String> {
    let (stem, suffix) = gguf.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, part) = rest.split_once('.')?;
        // Gemma norms before and after both blocks; its `ffn_norm` is the one before the MLP.
        let gemma = match (arch, part) {
            (Architecture::Gemma3, "ffn_norm") => Some("pre_feedforward_layernorm"),
            (Architecture::Gemma3, "post_ffw_norm") => Some("post_feedforward_layernorm"),
            _ => None,
        };
        let hf = if let Some(g) = gemma {
            g
        } else {
            match part {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                // Gemma's norm after attention; gpt-oss's (its only) norm before the MLP.
                "post_attention_norm" => "post_attention_layernorm",
                // gpt-oss's per-head attention sinks are a bare tensor.
                "attn_sinks" => return Some(format!("model.layers.{layer}.self_attn.sinks")),
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_qkv" => "self_attn.qkv_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                "ffn_gate_inp" => "mlp.gate",
                "ffn_gate_exps" => "mlp.switch_mlp.gate_proj",
                "ffn_up_exps" => "mlp.switch_mlp.up_proj",
                "ffn_down_exps" => "mlp.switch_mlp.down_proj",
                _ => return None,
            }
        };
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let hf = match stem {
        "token_embd" => "model.embed_tokens",
        "output_norm" => "model.norm",
        "output" => "lm_head",
        "rope_freqs" => "rope_freqs",
        "rope_factors_long" => "rope_factors_long",
        "rope_factors_short" => "rope_factors_short",
        _ => return None,
    };
    Some(format!("{hf}.{suffix}"))
}

/// llama.cpp stores llama q/k rows permuted for interleaved RoPE: within each head, row
/// `2j + i` holds what Hugging Face keeps at `i * hd/2 + j`. This is the gather that undoes it.
fn unpermute_index(heads: usize, head_dim: usize) -> Vec<i32> {
    let half = head_dim / 2;
    let mut idx = Vec::with_capacity(heads * head_dim);
    for h in 0..heads {
        for i in 0..2 {
            for j in 0..half {
                idx.push((h * head_dim + 2 * j + i) as i32);
            }
        }
    }
    idx
}

/// Opens a GGUF file: its config from the metadata, its tensors renamed, llama q/k rows restored.
pub(crate) fn open(path: &Path, gguf: &mut mlx::Gguf, cfg: &mut ModelConfig) -> Result<Tensors> {
    let mut map = HashMap::new();
    for key in gguf.tensor_keys() {
        let a = gguf.take(&key)?;
        match hf_name(&key, cfg.arch) {
            Some(name) => {
                map.insert(name, a);
            }
            None => tracing::debug!(tensor = %key, "ignoring GGUF tensor"),
        }
    }
    if let Some(f) = map.remove("rope_freqs.weight") {
        cfg.rope_scaling = RopeScaling::Factors(f.to_f32()?);
    }
    // Phi-3: `ffn_up` holds gate and up joined, and LongRoPE's factors are tensors (the short
    // ones go unused, as in mlx-lm).
    map.remove("rope_factors_short.weight");
    if cfg.arch == Architecture::Phi3 {
        map = map.into_iter().map(|(k, v)| (k.replace(".mlp.up_proj.", ".mlp.gate_up_proj."), v)).collect();
        if let Some(f) = map.remove("rope_factors_long.weight") {
            let mscale = crate::config::gguf_f32(gguf, "phi3.rope.scaling.attn_factor")?.unwrap_or(1.0);
            cfg.rope_scaling = RopeScaling::LongRope { long_factor: f.to_f32()?, mscale };
        }
    }
    // GGUF metadata does not say which layers are sparse; the layers with a router are.
    if let Some(moe) = cfg.moe.as_mut() {
        for (l, sparse) in moe.sparse.iter_mut().enumerate() {
            *sparse = map.contains_key(&format!("model.layers.{l}.mlp.gate.weight"));
        }
    }
    if matches!(cfg.arch, Architecture::Llama | Architecture::Mistral | Architecture::Mixtral) {
        for (proj, heads) in [("q_proj", cfg.num_heads), ("k_proj", cfg.num_kv_heads)] {
            let idx = unpermute_index(heads, cfg.head_dim);
            let idx = Array::from_i32(&idx, &[idx.len() as i32])?;
            for l in 0..cfg.num_layers {
                for part in ["weight", "scales", "biases", "bias"] {
                    let name = format!("model.layers.{l}.self_attn.{proj}.{part}");
                    if let Some(a) = map.remove(&name) {
                        if a.dim(0) as usize != heads * cfg.head_dim {
                            return Err(EngineError::bad_model(
                                path,
                                format!("tensor '{name}' has {} rows, expected {}", a.dim(0), heads * cfg.head_dim),
                            ));
                        }
                        map.insert(name, ops::take(&a, &idx, 0)?);
                    }
                }
            }
        }
    }
    Ok(Tensors { map, origin: path.into() })
}
