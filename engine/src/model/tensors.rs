//! A checkpoint's named tensors, opened from safetensors (one file or shards) and named one way
//! whatever the checkpoint's own naming (bare decoders, multimodal wrappers, per-expert
//! tensors), so the loader checks and takes them by the Hugging Face names only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx::{Array, ops};
use serde_json::Value;

use crate::config::MoeConfig;
use crate::error::{EngineError, Result};

/// Named tensors with the Hugging Face naming, taken out one by one while the model is built.
pub(crate) struct Tensors {
    pub(super) map: HashMap<String, Array>,
    pub(super) origin: PathBuf,
}

impl Tensors {
    /// Names checkpoints saved from the bare decoder (embedding models: `embed_tokens.weight`,
    /// `layers.0...`) as the causal-LM checkpoints name them (`model.embed_tokens.weight`).
    pub(crate) fn with_model_prefix(mut self) -> Tensors {
        if !self.map.contains_key("model.embed_tokens.weight") && self.map.contains_key("embed_tokens.weight") {
            self.map = self
                .map
                .into_iter()
                .map(|(k, v)| if k.starts_with("lm_head.") { (k, v) } else { (format!("model.{k}"), v) })
                .collect();
        }
        self
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Array> {
        self.map.remove(name)
    }

    /// Keeps the language model of a multimodal checkpoint (Gemma 3's `language_model.*`),
    /// named as the text model's, and drops the vision tower and projector.
    pub(super) fn text_only(mut self) -> Tensors {
        if self.map.keys().any(|k| k.starts_with("language_model.")) {
            self.map = self
                .map
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("language_model.").map(|k| (k.to_string(), v)))
                .collect();
        }
        self
    }

    /// Names routed experts one way whatever the checkpoint: Mixtral's `block_sparse_moe` is
    /// `mlp`, and per-expert tensors as Hugging Face saves them (`mlp.experts.3.up_proj`,
    /// Mixtral's `experts.3.w3`) are stacked into the `[experts, out, in]` tensors mlx-lm saves
    /// (`mlp.switch_mlp.up_proj`).
    pub(super) fn canonical_experts(mut self, moe: Option<&MoeConfig>) -> Result<Tensors> {
        let Some(moe) = moe else { return Ok(self) };
        self.map = self.map.into_iter().map(|(k, v)| (expert_name(&k), v)).collect();
        let layers: Vec<String> = self
            .map
            .keys()
            .filter_map(|k| k.split_once(".mlp.experts.0.").map(|(p, _)| p.to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for p in layers {
            for (names, to) in
                [(["gate_proj", "w1"], "gate_proj"), (["up_proj", "w3"], "up_proj"), (["down_proj", "w2"], "down_proj")]
            {
                for part in ["weight", "scales", "biases"] {
                    let Some(name) =
                        names.iter().find(|n| self.map.contains_key(&format!("{p}.mlp.experts.0.{n}.{part}")))
                    else {
                        continue;
                    };
                    let experts = (0..moe.num_experts)
                        .map(|e| self.need(&format!("{p}.mlp.experts.{e}.{name}.{part}")))
                        .collect::<Result<Vec<_>>>()?;
                    let stacked = ops::stack(&experts.iter().collect::<Vec<_>>(), 0)?;
                    self.map.insert(format!("{p}.mlp.switch_mlp.{to}.{part}"), stacked);
                }
            }
        }
        Ok(self)
    }

    pub(super) fn need(&mut self, name: &str) -> Result<Array> {
        self.take(name).ok_or_else(|| EngineError::bad_model(&self.origin, format!("tensor '{name}' is missing")))
    }
}

/// Opens the safetensors of an mlx-community folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`, or every `*.safetensors` file.
pub(crate) fn safetensors_folder(dir: &Path) -> Result<Tensors> {
    let index = dir.join("model.safetensors.index.json");
    let mut files: Vec<PathBuf> = if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| EngineError::io(index.clone(), e))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| EngineError::bad_model(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| EngineError::bad_model(&index, "no 'weight_map' object"))?;
        let mut names: Vec<String> = map.values().filter_map(Value::as_str).map(String::from).collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        found.sort();
        found
    };
    if files.is_empty() {
        return Err(EngineError::NotFound { what: "*.safetensors weight files".into(), path: dir.into() });
    }
    let mut map = HashMap::new();
    for file in files.drain(..) {
        if !file.is_file() {
            return Err(EngineError::NotFound { what: "weight shard".into(), path: file });
        }
        let mut st = mlx::Safetensors::load(&file).map_err(|e| EngineError::bad_model(&file, e.message))?;
        for key in st.keys() {
            let a = st.take(&key)?;
            map.insert(key, a);
        }
    }
    Ok(Tensors { map, origin: dir.into() })
}

/// A mixture-of-experts module's name as this loader looks for it: Mixtral's `block_sparse_moe`
/// is `mlp`, and gpt-oss's `router` and stacked `experts` (as mlx-lm saves them) are `gate` and
/// `switch_mlp`. Tensor names and per-module quantization keys go through it alike.
pub(super) fn expert_name(k: &str) -> String {
    let k = k.replace(".block_sparse_moe.", ".mlp.").replace(".mlp.router.", ".mlp.gate.");
    let k = if k.ends_with(".mlp.router") { format!("{}.mlp.gate", &k[..k.len() - ".mlp.router".len()]) } else { k };
    match k.split_once(".mlp.experts.") {
        Some((p, rest)) if ["gate_proj", "up_proj", "down_proj"].iter().any(|m| rest.split('.').next() == Some(m)) => {
            format!("{p}.mlp.switch_mlp.{rest}")
        }
        _ => k,
    }
}
