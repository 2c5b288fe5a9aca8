//! Text ↔ token ids: a `tokenizers` tokenizer from `tokenizer.json`, or one built from a GGUF
//! file's own vocabulary and merges; plus the incremental detokenizer used while streaming.

mod gguf;
mod gguf_spm;
mod stream;

use std::path::Path;

pub use stream::StreamDecoder;

use crate::error::{EngineError, Result};

/// A tokenizer with the special tokens the engine cares about.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// BOS token text, as chat templates want it.
    pub bos_token: Option<String>,
    /// EOS token text.
    pub eos_token: Option<String>,
}

impl Tokenizer {
    /// Loads `tokenizer.json` with the BOS/EOS names from `tokenizer_config.json`.
    pub fn from_file(path: &Path, bos_token: Option<String>, eos_token: Option<String>) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| EngineError::bad_model(path, format!("tokenizer.json: {e}")))?;
        Ok(Tokenizer { inner, bos_token, eos_token })
    }

    /// Builds the tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &mlx::Gguf, path: &Path) -> Result<Tokenizer> {
        gguf::build(g, path)
    }

    /// Token ids of `text`; `special` adds the tokenizer's own BOS/EOS decorations (for raw
    /// prompts; a rendered chat template already contains them).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, special).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Text of `ids`, special tokens included.
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if it is one token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of a special (control) token, such as `[TOOL_CALLS]` where a vocabulary makes it one.
    pub fn special_token_id(&self, text: &str) -> Option<u32> {
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .find(|(_, t)| t.special && t.content == text)
            .map(|(id, _)| id)
    }

    /// The text of one token id as stored in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
