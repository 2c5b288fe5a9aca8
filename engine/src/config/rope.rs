//! Rotary position embeddings' long-context variants: how `config.json` names them, and the
//! per-frequency values (Llama 3, YaRN, LongRoPE, GGUF factors) the rope kernel is given.

use std::path::Path;

use serde_json::Value;

use super::{ModelConfig, get_f32};
use crate::error::{EngineError, Result};

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

pub(super) fn parse_rope_scaling(config: &Value, rotary_dim: usize, path: &Path) -> Result<RopeScaling> {
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
