//! Decoder embedding models (Qwen3-Embedding and its kind): a model folder whose
//! sentence-transformers files (`modules.json`, `1_Pooling/config.json`) say it is pooled into
//! one vector per input. The engine runs such a model's inputs as prompts through the same
//! batched step as generation, takes the final-norm hidden state of each input's last token (the
//! pooling these models use) and L2-normalises it when the model has a `Normalize` module. A model
//! is either an embedding model or a generative one: a request of the other kind is refused.

use std::path::Path;

use serde_json::Value;

use crate::error::{EngineError, Result};

/// How an embedding model turns hidden states into its vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingSpec {
    /// The vector's length (the hidden size).
    pub dimension: usize,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
}

fn read(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| EngineError::bad_model(path, format!("not valid JSON: {e}")))
}

/// A sentence-transformers module's kind (`Pooling`, `Normalize`, ...).
fn kind(m: &Value) -> String {
    m.get("type").and_then(Value::as_str).unwrap_or("").rsplit('.').next().unwrap_or("").to_string()
}

/// Whether a model folder declares a pooling module (an embedding model), read from its files
/// without loading anything.
pub fn declares_pooling(dir: &Path) -> bool {
    matches!(read(&dir.join("modules.json")), Ok(Some(Value::Array(modules))) if modules.iter().any(|m| kind(m) == "Pooling"))
}

/// The embedding spec of a model folder, or `None` for a generative model (no `modules.json`
/// with a pooling module).
pub fn detect(dir: &Path, hidden_size: usize) -> Result<Option<EmbeddingSpec>> {
    let modules_path = dir.join("modules.json");
    let Some(modules) = read(&modules_path)? else { return Ok(None) };
    let modules = modules.as_array().cloned().unwrap_or_default();
    let Some(pooling) = modules.iter().find(|m| kind(m) == "Pooling") else { return Ok(None) };
    let folder = pooling.get("path").and_then(Value::as_str).unwrap_or("1_Pooling");
    let cfg_path = dir.join(folder).join("config.json");
    let cfg = read(&cfg_path)?
        .ok_or_else(|| EngineError::NotFound { what: "pooling config".into(), path: cfg_path.clone() })?;
    let on = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    let modes = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"];
    let chosen: Vec<&str> = modes.iter().copied().filter(|m| on(&format!("pooling_mode_{m}"))).collect();
    if chosen != ["lasttoken"] {
        return Err(EngineError::bad_model(
            &cfg_path,
            format!(
                "pooling {chosen:?} is not supported: only last-token pooling (pooling_mode_lasttoken), as decoder embedding models use"
            ),
        ));
    }
    if let Some(d) = cfg.get("word_embedding_dimension").and_then(Value::as_u64)
        && d as usize != hidden_size
    {
        return Err(EngineError::bad_model(
            &cfg_path,
            format!("word_embedding_dimension {d} is not the model's hidden size {hidden_size}"),
        ));
    }
    Ok(Some(EmbeddingSpec { dimension: hidden_size, normalize: modules.iter().any(|m| kind(m) == "Normalize") }))
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    }
}

/// Matryoshka truncation: the first `dimensions` values, unit length again.
pub fn truncate(mut v: Vec<f32>, dimensions: usize) -> Vec<f32> {
    v.truncate(dimensions);
    normalize(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(modules: &str, pooling: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.json"), modules).unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(dir.path().join("1_Pooling/config.json"), pooling).unwrap();
        dir
    }

    const MODULES: &str = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;

    #[test]
    fn last_token_pooling_is_detected_and_other_poolings_refused() {
        let d = folder(MODULES, r#"{"word_embedding_dimension": 64, "pooling_mode_lasttoken": true}"#);
        assert_eq!(detect(d.path(), 64).unwrap(), Some(EmbeddingSpec { dimension: 64, normalize: true }));
        assert!(detect(d.path(), 32).is_err(), "dimension mismatch");
        let d = folder(MODULES, r#"{"pooling_mode_mean_tokens": true}"#);
        assert!(detect(d.path(), 64).unwrap_err().to_string().contains("mean_tokens"));
        assert_eq!(detect(tempfile::tempdir().unwrap().path(), 64).unwrap(), None, "no modules.json: generative");
    }

    #[test]
    fn truncation_renormalizes() {
        let v = truncate(vec![3.0, 4.0, 12.0], 2);
        assert_eq!(v, [0.6, 0.8]);
    }
}
