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
    /// See [`Tokenizer::max_piece_bytes`]; read from the vocabulary once, when first needed.
    max_piece_bytes: std::sync::OnceLock<usize>,
}

impl Tokenizer {
    /// Loads `tokenizer.json` with the BOS/EOS names from `tokenizer_config.json`.
    pub fn from_file(path: &Path, bos_token: Option<String>, eos_token: Option<String>) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| EngineError::bad_model(path, format!("tokenizer.json: {e}")))?;
        Ok(Tokenizer::new(inner, bos_token, eos_token))
    }

    fn new(inner: tokenizers::Tokenizer, bos_token: Option<String>, eos_token: Option<String>) -> Tokenizer {
        Tokenizer { inner, bos_token, eos_token, max_piece_bytes: std::sync::OnceLock::new() }
    }

    /// At least as many bytes as the text any one token stands for: a vocabulary entry is never
    /// shorter than its text (byte-level pieces spell a byte in one or two, SentencePiece's `▁`
    /// takes three for a space, byte-fallback pieces six for one). So a text of `n` bytes is at
    /// least `n / max_piece_bytes()` tokens, known without tokenizing it.
    pub fn max_piece_bytes(&self) -> usize {
        *self
            .max_piece_bytes
            .get_or_init(|| self.inner.get_vocab(true).keys().map(String::len).max().unwrap_or(1).max(1))
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

    /// One token as log-probabilities report it: its text (special tokens included), and the
    /// bytes it stands for. The bytes are the text's, except where the text is an incomplete
    /// character (U+FFFD): then the token's own, read from its vocabulary entry (a byte-fallback
    /// piece such as `<0xF0>`, or a byte-level piece through GPT-2's byte-to-character table
    /// reversed), so a client can join them into the text.
    pub fn piece(&self, id: u32) -> (String, Vec<u8>) {
        let text = self.decode_with_special(&[id]).unwrap_or_default();
        let bytes = match self.inner.id_to_token(id) {
            Some(piece) if text.contains('\u{FFFD}') => byte_fallback_piece(&piece)
                .map(|b| vec![b])
                .or_else(|| byte_level_piece(&piece))
                .unwrap_or_else(|| text.clone().into_bytes()),
            _ => text.clone().into_bytes(),
        };
        (text, bytes)
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

/// The byte of a SentencePiece byte-fallback piece (`<0xF0>`).
fn byte_fallback_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes of a byte-level BPE piece: GPT-2 writes each byte as a printable character, the
/// printable Latin-1 bytes as themselves and the 68 others as U+0100 onwards, in byte order.
fn byte_level_piece(piece: &str) -> Option<Vec<u8>> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    piece
        .chars()
        .map(|c| {
            let u = c as u32;
            if u < 256 {
                return printable(u).then_some(u as u8);
            }
            (0..=255u32).filter(|&b| !printable(b)).nth((u - 256) as usize).map(|b| b as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{byte_fallback_piece, byte_level_piece};

    #[test]
    fn pieces_give_their_bytes() {
        assert_eq!(byte_fallback_piece("<0xF0>"), Some(0xF0));
        assert_eq!(byte_fallback_piece("<0x0A>"), Some(0x0A));
        assert_eq!(byte_fallback_piece("<0xF>"), None);
        assert_eq!(byte_fallback_piece("hello"), None);
        // "Ġ" is the space (byte 32, the 33rd unprintable one), "Ċ" the newline (byte 10).
        assert_eq!(byte_level_piece("Ġhi"), Some(b" hi".to_vec()));
        assert_eq!(byte_level_piece("Ċ"), Some(vec![10]));
        // U+00F0 U+0141 is how GPT-2 writes the first two bytes of an emoji's four (F0 9F).
        assert_eq!(byte_level_piece("ðŁ"), Some(vec![0xF0, 0x9F]));
        assert_eq!(byte_level_piece("\u{7000}"), None);
    }
}
