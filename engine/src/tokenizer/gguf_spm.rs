//! A SentencePiece tokenizer (GGUF `tokenizer.ggml.model` "llama": Llama 2, Mistral, Mixtral,
//! Gemma, Phi-3) from a GGUF file's pieces, scores and token types, as a `tokenizer.json` BPE
//! document the way Hugging Face converts a SentencePiece model: byte fallback (`<0x0A>`
//! pieces), `▁` for spaces with a dummy prefix unless `tokenizer.ggml.add_space_prefix` is off,
//! and merges recovered from the scores — every split of a piece into two pieces is a merge,
//! ranked by the piece's score, then by the halves' ids.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::Tokenizer;
use super::gguf::{assemble, flag, number, strings};
use crate::error::{EngineError, Result};

const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

pub(super) fn build(g: &mlx::Gguf, path: &Path) -> Result<Tokenizer> {
    let tokens = strings(g, "tokenizer.ggml.tokens", path)?;
    let scores: Vec<f32> = match g.numbers("tokenizer.ggml.scores") {
        Some(v) => v.iter().map(|&x| x as f32).collect(),
        None => return Err(EngineError::bad_model(path, "GGUF metadata lacks tokenizer.ggml.scores")),
    };
    if scores.len() != tokens.len() {
        return Err(EngineError::bad_model(
            path,
            format!("tokenizer.ggml.scores has {} values for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let types = super::gguf::token_types(g, tokens.len());
    let kind = |id: usize| types.get(id).copied().unwrap_or(1);
    let mut vocab = Map::new();
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        ids.entry(tok.as_str()).or_insert(id);
        if matches!(kind(id), UNKNOWN | CONTROL | USER_DEFINED) {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": kind(id) != USER_DEFINED
            }));
        }
    }
    let merges = merges(&tokens, &scores, &ids, &kind);
    let unk = number(g, "tokenizer.ggml.unknown_token_id")?
        .and_then(|id| tokens.get(id as usize).cloned())
        .or_else(|| (0..tokens.len()).find(|&i| kind(i) == UNKNOWN).map(|i| tokens[i].clone()));
    let space_prefix = flag(g, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = if space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges
        }
    });
    assemble(g, path, &tokens, doc)
}

/// The merges a BPE needs to rebuild SentencePiece's pieces: pieces by descending score (ties
/// by id), and for each every split into two known pieces, ordered by the halves' ids. Control,
/// unknown and byte pieces are never the result of a merge.
fn merges(tokens: &[String], scores: &[f32], ids: &HashMap<&str, usize>, kind: &dyn Fn(usize) -> i32) -> Vec<Value> {
    let mut order: Vec<usize> = (0..tokens.len()).filter(|&i| !matches!(kind(i), UNKNOWN | CONTROL | BYTE)).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut out = Vec::new();
    for i in order {
        let piece = tokens[i].as_str();
        let mut local: Vec<(usize, usize, &str, &str)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort_unstable();
        out.extend(local.into_iter().map(|(_, _, l, r)| json!([l, r])));
    }
    out
}
