//! The engine's request and event types: what the daemon submits and what streams back.

use std::time::Duration;

use crate::chat_template::ChatMessage;
use crate::constraint::Constraint;
use crate::error::{EngineError, Result};
use crate::options::{MAX_STOP_BYTES, MAX_STOP_STRINGS};
use crate::sampling::SamplingParams;

/// What to generate from.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// Raw text, tokenized with the tokenizer's own special-token decoration (BOS).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
    /// Text already in the model's prompt format (a rendered chat template, perhaps with the
    /// start of the answer appended): special-token text in it is matched, nothing is added.
    Rendered(String),
    /// A conversation, rendered through the model's chat template.
    Chat {
        /// The messages.
        messages: Vec<ChatMessage>,
        /// Tool definitions for templates that support them.
        tools: Option<Vec<serde_json::Value>>,
        /// End the prompt with the assistant's turn opening (normally true).
        add_generation_prompt: bool,
        /// End the prompt inside the final assistant message, so the answer continues it.
        continue_final_message: bool,
        /// Extra template variables (e.g. `enable_thinking`).
        extra: Option<serde_json::Map<String, serde_json::Value>>,
    },
}

impl Prompt {
    /// The request field this prompt came from, for errors about its size.
    pub fn field(&self) -> &'static str {
        match self {
            Prompt::Text(_) => "prompt",
            Prompt::Tokens(_) => "prompt_tokens",
            Prompt::Rendered(_) | Prompt::Chat { .. } => "messages",
        }
    }
}

/// One generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// An id for logs and events.
    pub request_id: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` means up to the end of the context.
    pub max_tokens: Option<usize>,
    /// With `max_tokens` unset, a limit that only ever shortens the answer (a model's configured
    /// default): past the context it is the end of the context, never an error.
    pub max_tokens_cap: Option<usize>,
    /// Stop strings (not included in the output).
    pub stop: Vec<String>,
    /// Keep the text of special tokens in the output (tool-call markers that some vocabularies
    /// make special, such as `<|python_tag|>` and `[TOOL_CALLS]`). End-of-sequence tokens are
    /// never shown.
    pub keep_special_tokens: bool,
    /// What the output must match, if anything.
    pub constraint: Option<Constraint>,
}

impl GenerateRequest {
    /// A request with default sampling.
    pub fn new(prompt: Prompt) -> GenerateRequest {
        GenerateRequest {
            request_id: String::new(),
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: None,
            max_tokens_cap: None,
            stop: vec![],
            keep_special_tokens: false,
            constraint: None,
        }
    }

    /// The checks that need no model: sampling values, token limits and stop strings. A caller
    /// that picks the model by name runs them first, so a bad request loads (and evicts) nothing;
    /// [`crate::Engine::submit`] runs them again with the checks that need the model.
    pub fn check(&self) -> Result<()> {
        if let Prompt::Tokens(ids) = &self.prompt
            && ids.is_empty()
        {
            return Err(EngineError::invalid(self.prompt.field(), "is empty"));
        }
        for (field, value) in [("max_tokens", self.max_tokens), ("max_tokens_cap", self.max_tokens_cap)] {
            if value == Some(0) {
                return Err(EngineError::invalid(field, "0 is below the minimum 1"));
            }
        }
        self.sampling.validate(usize::MAX)?;
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(EngineError::invalid(
                "stop",
                format!("{} strings is above the maximum {MAX_STOP_STRINGS}", self.stop.len()),
            ));
        }
        // An empty stop string would match before any text: no answer at all, which no caller means.
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(EngineError::invalid(format!("stop[{i}]"), "is empty"));
        }
        if let Some((i, s)) = self.stop.iter().enumerate().find(|(_, s)| s.len() > MAX_STOP_BYTES) {
            return Err(EngineError::invalid(
                format!("stop[{i}]"),
                format!("is {} bytes, above the maximum {MAX_STOP_BYTES}", s.len()),
            ));
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token or a stop string.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
}

/// Token counts of a finished generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (an EOS token counts).
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
}

/// Where the time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Waiting for a batch slot.
    pub queued: Duration,
    /// From admission to the first generated token (prefill).
    pub prefill: Duration,
    /// From the first to the last generated token.
    pub decode: Duration,
}

/// Log-probability information for one generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// Token id.
    pub token: u32,
    /// Its text (U+FFFD where it is part of a character).
    pub text: String,
    /// The bytes it stands for (part of a character's, where it is one).
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
    /// Most likely alternatives.
    pub top: Vec<TopLogprob>,
}

/// One of the most likely tokens at a position.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLogprob {
    /// Token id.
    pub token: u32,
    /// Its text.
    pub text: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
}

/// One event of a generation stream.
#[derive(Debug)]
pub enum Event {
    /// The request was admitted into the running batch.
    Started {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Of which reused from the prefix cache.
        cached_tokens: usize,
    },
    /// New text (possibly empty while a character or a stop string is incomplete) and the
    /// tokens that produced it.
    Delta {
        /// Text to append.
        text: String,
        /// Token ids generated since the last delta.
        tokens: Vec<u32>,
        /// Log-probabilities, when requested.
        logprobs: Vec<TokenLogprob>,
    },
    /// An embedding request's vector (before `Finished`).
    Embedding(Vec<f32>),
    /// The generation ended normally.
    Finished {
        /// Why.
        reason: FinishReason,
        /// The stop string that ended it, when one did.
        stop: Option<String>,
        /// Token counts.
        usage: Usage,
        /// Timings.
        timings: Timings,
    },
    /// The generation failed.
    Error(crate::EngineError),
}
