//! Incremental detokenization. Byte-level tokenizers split multi-byte UTF-8 characters across
//! tokens, and decoders strip or add spaces depending on context, so text is produced by decoding
//! a short window of recent tokens twice (with and without the newest) and emitting the
//! difference — and only once it no longer ends in an incomplete character (U+FFFD).

use super::Tokenizer;
use crate::error::Result;

/// Turns a stream of token ids into a stream of text pieces that concatenate to the full decode.
#[derive(Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    special: bool,
}

impl StreamDecoder {
    /// A decoder with no tokens yet.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Also decodes special tokens to their text (for tool-call markers some vocabularies make
    /// special).
    pub fn keep_special(mut self, yes: bool) -> StreamDecoder {
        self.special = yes;
        self
    }

    fn decode(&self, tok: &Tokenizer, ids: &[u32]) -> Result<String> {
        if self.special { tok.decode_with_special(ids) } else { tok.decode(ids) }
    }

    /// Adds one token; returns the text it completes (often empty mid-character).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = self.decode(tok, &self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(tok, &self.ids[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let text = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            return Ok(text);
        }
        Ok(String::new())
    }

    /// Whatever text is still held back (an incomplete character at the very end).
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        if self.read_offset >= self.ids.len() {
            return Ok(String::new());
        }
        let prefix = self.decode(tok, &self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(tok, &self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(if full.len() > prefix.len() && full.is_char_boundary(prefix.len()) {
            full[prefix.len()..].to_string()
        } else {
            String::new()
        })
    }

    /// Every token pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
