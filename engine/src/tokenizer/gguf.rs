//! A byte-level BPE tokenizer from a GGUF file's `tokenizer.ggml.*` metadata: the vocabulary,
//! the merges, the token types (control tokens become special tokens), BOS/EOS, and the
//! pre-tokenizer named by `tokenizer.ggml.pre`. It is expressed as a `tokenizer.json` document and
//! handed to the `tokenizers` crate, so encoding is the same code as for Hugging Face folders.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::Tokenizer;
use crate::config::gguf_str;
use crate::error::{EngineError, Result};

/// GPT-2's split regex is ByteLevel's built-in one; these are the others llama.cpp names.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub(super) fn strings(g: &mlx::Gguf, key: &str, path: &Path) -> Result<Vec<String>> {
    g.strings(key).ok_or_else(|| EngineError::bad_model(path, format!("GGUF metadata lacks the string list {key}")))
}

pub(super) fn number(g: &mlx::Gguf, key: &str) -> Result<Option<u32>> {
    Ok(g.number(key).map(|x| x as u32))
}

/// Each token's kind (normal, control, user-defined, byte...), normal where the list is missing.
pub(super) fn token_types(g: &mlx::Gguf, n: usize) -> Vec<i32> {
    match g.numbers("tokenizer.ggml.token_type") {
        Some(v) => v.iter().map(|&x| x as i32).collect(),
        None => vec![1; n],
    }
}

pub(super) fn flag(g: &mlx::Gguf, key: &str) -> Result<Option<bool>> {
    Ok(number(g, key)?.map(|x| x != 0))
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

pub(super) fn build(g: &mlx::Gguf, path: &Path) -> Result<Tokenizer> {
    let model = gguf_str(g, "tokenizer.ggml.model")?.unwrap_or_default();
    if model == "llama" {
        return super::gguf_spm::build(g, path);
    }
    if model != "gpt2" {
        return Err(EngineError::bad_model(
            path,
            format!(
                "GGUF tokenizer model '{model}' is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece)"
            ),
        ));
    }
    let tokens = strings(g, "tokenizer.ggml.tokens", path)?;
    let merges = strings(g, "tokenizer.ggml.merges", path)?;
    let types = token_types(g, tokens.len());
    let pre = gguf_str(g, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".into());
    let (pre_tokenizer, ignore_merges) = match pre.as_str() {
        "smollm" | "starcoder" | "refact" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "llama-bpe" | "llama3" | "smaug-bpe" => {
            (json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}), true)
        }
        "qwen2" | "deepseek-r1-qwen" => {
            (json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}), false)
        }
        other => {
            if other != "gpt2" && other != "default" {
                tracing::warn!(pre = other, "unknown GGUF pre-tokenizer; using GPT-2's");
            }
            (byte_level(true), false)
        }
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let kind = types.get(id).copied().unwrap_or(1);
        // 3 = control, 4 = user-defined: matched whole, before BPE.
        if kind == 3 || kind == 4 {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": kind == 3
            }));
        }
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": Value::Null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges
        }
    });
    assemble(g, path, &tokens, doc)
}

/// Adds BOS/EOS (and the BOS decoration when `tokenizer.ggml.add_bos_token` asks for it) to a
/// `tokenizer.json` document and builds the tokenizer.
pub(super) fn assemble(g: &mlx::Gguf, path: &Path, tokens: &[String], mut doc: Value) -> Result<Tokenizer> {
    let name = |key: &str| -> Result<Option<(u32, String)>> {
        Ok(number(g, key)?.and_then(|id| tokens.get(id as usize).map(|t| (id, t.clone()))))
    };
    let bos = name("tokenizer.ggml.bos_token_id")?;
    let eos = name("tokenizer.ggml.eos_token_id")?;
    if let (Some((id, tok)), Some(true)) = (&bos, flag(g, "tokenizer.ggml.add_bos_token")?) {
        doc["post_processor"] = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok.clone(): {"id": tok, "ids": [id], "tokens": [tok]}}
        });
    }
    let inner: tokenizers::Tokenizer =
        doc.to_string().parse().map_err(|e| EngineError::bad_model(path, format!("GGUF tokenizer: {e}")))?;
    Ok(Tokenizer::new(inner, bos.map(|b| b.1), eos.map(|e| e.1)))
}
