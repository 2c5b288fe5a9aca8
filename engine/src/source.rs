//! Where a model comes from on disk and how its parts are found: an mlx-community folder
//! (`config.json`, safetensors, `tokenizer.json`, `tokenizer_config.json`, chat template files,
//! `generation_config.json`) or a single GGUF file that carries everything in its metadata.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::ChatTemplate;
use crate::config::{ModelConfig, id_list};
use crate::embedding::EmbeddingSpec;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::model::loader::{self, LoadOptions};
use crate::tokenizer::Tokenizer;

/// A model on local disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// An mlx-community / Hugging Face style folder.
    Folder(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

impl ModelSource {
    /// Classifies a path: a `.gguf` file, a folder with `config.json`, or a folder holding
    /// exactly one `.gguf` file.
    pub fn detect(path: &Path) -> Result<ModelSource> {
        if path.is_file() {
            return Ok(ModelSource::Gguf(path.into()));
        }
        if !path.is_dir() {
            return Err(EngineError::NotFound { what: "model file or folder".into(), path: path.into() });
        }
        if path.join("config.json").is_file() {
            return Ok(ModelSource::Folder(path.into()));
        }
        let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| EngineError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        match ggufs.as_slice() {
            [one] => Ok(ModelSource::Gguf(one.clone())),
            [] => Err(EngineError::NotFound { what: "config.json (or a .gguf file)".into(), path: path.into() }),
            _ => Err(EngineError::bad_model(path, "the folder holds several .gguf files; name one")),
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Folder(p) | ModelSource::Gguf(p) => p,
        }
    }
}

/// Everything loaded for one model, on the calling thread (MLX arrays stay on the thread that
/// made them). [`crate::Engine::load`] does this on its engine thread; tests and tools that
/// drive [`Model::forward`] themselves call [`load_local`].
pub struct LocalModel {
    /// The weights and forward pass.
    pub model: Model,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, if the model has one.
    pub template: Option<ChatTemplate>,
    /// Every end-of-sequence id the model declares.
    pub eos_token_ids: Vec<u32>,
    /// Whether quantized weights were expanded to float32.
    pub dense: bool,
    /// How an embedding model pools its vector; `None` for a generative model.
    pub embedding: Option<EmbeddingSpec>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| EngineError::bad_model(path, format!("not valid JSON: {e}")))
}

/// `"<s>"` or `{"content": "<s>", ...}` as tokenizer_config.json writes special tokens.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

fn folder_template(dir: &Path, tok_cfg: Option<&Value>) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja).map(Some).map_err(|e| EngineError::io(jinja, e));
    }
    let from = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            // A list of named templates: take "default".
            Value::Array(list) => list.iter().find_map(|t| {
                (t.get("name")?.as_str()? == "default").then(|| t.get("template")?.as_str().map(String::from))?
            }),
            _ => None,
        }
    };
    if let Some(t) = from(tok_cfg.and_then(|c| c.get("chat_template"))) {
        return Ok(Some(t));
    }
    let json = read_json(&dir.join("chat_template.json"))?;
    Ok(from(json.as_ref().and_then(|j| j.get("chat_template"))))
}

/// Loads a model on the calling thread; `progress` receives (layers loaded, total).
pub fn load_local(source: &ModelSource, opts: &LoadOptions, progress: impl FnMut(usize, usize)) -> Result<LocalModel> {
    match source {
        ModelSource::Folder(dir) => load_folder(dir, opts, progress),
        ModelSource::Gguf(path) => load_gguf(path, opts, progress),
    }
}

fn load_folder(dir: &Path, opts: &LoadOptions, progress: impl FnMut(usize, usize)) -> Result<LocalModel> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(EngineError::NotFound { what: "config.json".into(), path: cfg_path });
    }
    let mut cfg = ModelConfig::from_config_json(&cfg_path)?;
    let embedding = crate::embedding::detect(dir, cfg.hidden_size)?;
    if embedding.is_some() {
        // An embedding model computes no logits: its output head, if it ships one, is dropped.
        cfg.tie_word_embeddings = true;
    }
    let tok_cfg = read_json(&dir.join("tokenizer_config.json"))?;
    let bos = token_text(tok_cfg.as_ref().and_then(|c| c.get("bos_token")));
    let eos = token_text(tok_cfg.as_ref().and_then(|c| c.get("eos_token")));
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(EngineError::NotFound { what: "tokenizer.json".into(), path: tok_path });
    }
    let tokenizer = Tokenizer::from_file(&tok_path, bos.clone(), eos.clone())?;
    let template = folder_template(dir, tok_cfg.as_ref())?.map(|t| ChatTemplate::new(&t, bos, eos)).transpose()?;
    let mut eos_ids = cfg.eos_token_ids.clone();
    if let Some(generation) = read_json(&dir.join("generation_config.json"))? {
        eos_ids.extend(id_list(generation.get("eos_token_id")));
    }
    if let Some(id) = tokenizer.eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
        eos_ids.push(id);
    }
    check_vocab(&tokenizer, &cfg, dir)?;
    let tensors = loader::safetensors_folder(dir)?.with_model_prefix();
    let dense = loader::will_densify(&cfg, opts);
    let model = loader::build(tensors, cfg, false, opts, progress)?;
    Ok(LocalModel { model, tokenizer, template, eos_token_ids: dedup(eos_ids), dense, embedding })
}

fn load_gguf(path: &Path, opts: &LoadOptions, progress: impl FnMut(usize, usize)) -> Result<LocalModel> {
    if !path.is_file() {
        return Err(EngineError::NotFound { what: "GGUF file".into(), path: path.into() });
    }
    let mut g = mlx::Gguf::load(path).map_err(|e| EngineError::bad_model(path, e.message))?;
    let mut cfg = ModelConfig::from_gguf(&g, path)?;
    let tokenizer = Tokenizer::from_gguf(&g, path)?;
    let template = crate::config::gguf_str(&g, "tokenizer.chat_template")?
        .map(|t| ChatTemplate::new(&t, tokenizer.bos_token.clone(), tokenizer.eos_token.clone()))
        .transpose()?;
    let eos_ids = cfg.eos_token_ids.clone();
    check_vocab(&tokenizer, &cfg, path)?;
    let tensors = crate::model::gguf_tensors(path, &mut g, &mut cfg)?;
    drop(g);
    let dense = loader::will_densify(&cfg, opts);
    let model = loader::build(tensors, cfg, true, opts, progress)?;
    Ok(LocalModel { model, tokenizer, template, eos_token_ids: dedup(eos_ids), dense, embedding: None })
}

fn check_vocab(tokenizer: &Tokenizer, cfg: &ModelConfig, path: &Path) -> Result<()> {
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(EngineError::bad_model(
            path,
            format!(
                "the tokenizer has {} tokens but the model's vocabulary has {} rows",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
        ));
    }
    Ok(())
}

fn dedup(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_unstable();
    ids.dedup();
    ids
}
