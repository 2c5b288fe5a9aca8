//! Tool calls and reasoning in generated text: streaming parsers that turn a model's output, fed
//! in whatever pieces the detokenizer produces, into OpenAI-style content, `reasoning_content`
//! and `tool_calls`. This module owns the formats model families write calls in (Hermes / Qwen
//! `<tool_call>`, Llama 3 JSON, Mistral `[TOOL_CALLS]`), telling them apart from a chat template,
//! the prompt prefixes that force a call, and `<think>` splitting.
//!
//! [`Shaper`] runs them for a request (and renders its prompt); in this order on each decoded
//! piece of text:
//!
//! 1. [`ReasoningSplitter::push`] splits it into reasoning and content;
//! 2. the content part goes to [`ToolCallParser::push`], whose [`ToolEvent`]s become content
//!    deltas and tool-call deltas (id and name first, then argument fragments);
//! 3. at the end, both `finish()` methods release what they held back, in the same order (the
//!    splitter's final content goes through the tool parser before its `finish`).
//!
//! Event contract of [`ToolCallParser`]: `Text` is content, emitted as soon as it can't be the
//! start of a marker; for each call, `CallStart` comes once its name is known, then `CallArgs`
//! fragments whose concatenation is the arguments JSON text, then `CallEnd`. Every `CallStart` is
//! followed by a `CallEnd`. A call that turns out malformed (bad JSON, a name that wasn't offered,
//! cut off by the end of the output) is given back as `Text` — its raw text, marker included —
//! sets [`ToolCallParser::malformed`], and is not in [`ToolCallParser::calls`]; if it had already
//! been started, it is ended first, so a streaming client sees a call that stopped early followed
//! by the text. JSON at the start of a Llama 3 or Mistral answer that doesn't name an offered
//! tool is ordinary content, not malformed.
//!
//! Holdback: content waits only while it may still become a marker — a trailing piece that is a
//! proper prefix of `<tool_call>`, `<|python_tag|>` or `[TOOL_CALLS]` (so no part of a marker is
//! ever shown); for Llama 3 and Mistral also leading whitespace (and Mistral's `[`) at the very
//! start, until the next character says whether the answer is a bare call; and whitespace right
//! after a finished call, which is dropped if another call or the end follows.
//!
//! `<|python_tag|>`, `[TOOL_CALLS]` and `[ARGS]` are special tokens in real Llama 3 and Mistral
//! vocabularies, so a detokenizer that skips special tokens drops them. The parser copes where it
//! can (bare JSON at the start is a Llama 3 call, `[{` at the start Mistral's list, `name{…}`
//! after `[TOOL_CALLS]` the newer form), but Mistral v11 output with both markers dropped is plain
//! text to anyone: decode those tokens with their text.

mod call;
mod grammar;
pub mod harmony;
mod json;
mod parser;
mod reasoning;
mod shaper;

#[cfg(test)]
mod tests;

pub use parser::ToolCallParser;
pub use reasoning::ReasoningSplitter;
pub use shaper::{CallDelta, Rendered, ShapedDelta, Shaper, Shaping};

/// The way a model family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolFormat {
    /// Qwen2.5, Qwen3, Hermes 2/3: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`,
    /// several in a row.
    Hermes,
    /// Llama 3.1 / 3.2 JSON calls: `{"name": …, "parameters": {…}}` as the whole answer,
    /// optionally after `<|python_tag|>`, several separated by `;`.
    Llama3,
    /// Mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` and the newer
    /// `[TOOL_CALLS]name[ARGS]{…}` (also with `[CALL_ID]id` before `[ARGS]`).
    Mistral,
    /// Phi-4-mini: a JSON list of `{"name": …, "arguments": {…}}` after its `<|tool_call|>`
    /// token (closed by `<|/tool_call|>`), or after `functools` as vLLM's and SGLang's Phi-4-mini
    /// prompts ask for. Its template offers the tools in `<|tool|>…<|/tool|>`.
    Phi4Mini,
}

/// A `tool_choice` that obliges the model to call something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForcedChoice {
    /// `"required"`: some tool.
    Required,
    /// `{"type": "function", "function": {"name": …}}`: this tool.
    Function(String),
}

/// One step of parsed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    /// Ordinary content to show.
    Text(String),
    /// A call begins; its name is known. `index` counts calls from 0 in this output.
    CallStart {
        /// Position of the call among this output's calls.
        index: usize,
        /// `call_` and 24 random alphanumerics.
        id: String,
        /// The function's name, one of the offered tools.
        name: String,
    },
    /// More of a call's arguments JSON text.
    CallArgs {
        /// The call it belongs to.
        index: usize,
        /// The next piece of the arguments text.
        fragment: String,
    },
    /// A call's arguments are complete.
    CallEnd {
        /// The call that ended.
        index: usize,
    },
}

/// A completed call, for non-streaming responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    /// `call_` and 24 random alphanumerics, the same as in its `CallStart`.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments: a JSON object, as text (as the model wrote it).
    pub arguments: String,
}

impl ToolFormat {
    /// The format a chat template renders tool calls in, from its source text; `None` when it
    /// shows no tool support we know.
    pub fn detect(chat_template: &str) -> Option<ToolFormat> {
        let t = chat_template;
        if t.contains("<tool_call>") {
            Some(ToolFormat::Hermes)
        } else if t.contains("[TOOL_CALLS]") {
            Some(ToolFormat::Mistral)
        } else if t.contains("<|tool|>") {
            Some(ToolFormat::Phi4Mini)
        } else if t.contains("<|python_tag|>")
            || t.contains("ipython")
            || (t.contains("<|start_header_id|>") && t.contains("\"parameters\""))
        {
            Some(ToolFormat::Llama3)
        } else {
            None
        }
    }

    /// Text to append after the assistant generation prompt so the model must continue a call:
    /// the opening marker for [`ForcedChoice::Required`], and the call up to its arguments for a
    /// named function. Feed the same text to [`ToolCallParser::with_prefix`].
    ///
    /// The prefixes stop right after a marker or after `:`, never on a space: byte-level BPE
    /// vocabularies attach a space to the token that follows it (` {`, ` "`), so a prompt ending
    /// in a space would force a tokenization the model never saw. For Mistral the named form is
    /// the JSON list, which both Mistral generations parse (and this parser reads either way).
    pub fn forced_prefix(&self, choice: &ForcedChoice) -> String {
        let quoted = |name: &str| serde_json::Value::String(name.to_string()).to_string();
        match (self, choice) {
            (ToolFormat::Hermes, ForcedChoice::Required) => "<tool_call>\n".into(),
            (ToolFormat::Hermes, ForcedChoice::Function(n)) => {
                format!("<tool_call>\n{{\"name\": {}, \"arguments\":", quoted(n))
            }
            (ToolFormat::Llama3, ForcedChoice::Required) => "{\"name\":".into(),
            (ToolFormat::Llama3, ForcedChoice::Function(n)) => format!("{{\"name\": {}, \"parameters\":", quoted(n)),
            (ToolFormat::Mistral, ForcedChoice::Required) => "[TOOL_CALLS]".into(),
            (ToolFormat::Mistral, ForcedChoice::Function(n)) => {
                format!("[TOOL_CALLS][{{\"name\": {}, \"arguments\":", quoted(n))
            }
            (ToolFormat::Phi4Mini, ForcedChoice::Required) => "<|tool_call|>".into(),
            (ToolFormat::Phi4Mini, ForcedChoice::Function(n)) => {
                format!("<|tool_call|>[{{\"name\": {}, \"arguments\":", quoted(n))
            }
        }
    }
}

/// A fresh call id: `call_` and 24 random ASCII letters and digits.
pub fn new_call_id() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    let tail: String = (0..24).map(|_| char::from(rng.sample(rand::distr::Alphanumeric))).collect();
    format!("call_{tail}")
}
