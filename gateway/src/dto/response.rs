//! Response bodies in OpenAI's exact shape: chat completions and their stream chunks, text
//! completions, models, usage with `prompt_tokens_details.cached_tokens`, log-probabilities.

use serde::Serialize;

/// Token counts.
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

/// Completion token breakdown.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompletionTokensDetails {
    /// Tokens the model spent reasoning (its thinking tags included).
    pub reasoning_tokens: u32,
}

/// Prompt token breakdown.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens reused from the prefix cache.
    pub cached_tokens: u32,
}

/// A function call in a message.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

/// Name and JSON arguments.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// The assistant's message.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// One alternative token.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A generated token's log-probability.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs` of chat completions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChoiceLogprobs {
    /// Per content token.
    pub content: Vec<TokenLogprob>,
}

/// One choice of a chat completion.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `chat.completion`.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    pub system_fingerprint: Option<String>,
}

/// A tool-call fragment in a stream.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta,
}

/// Name (first fragment) and argument text.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// The `delta` of a stream chunk.
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// One choice of a stream chunk.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `chat.completion.chunk`.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Absent unless `stream_options.include_usage`; then `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    pub system_fingerprint: Option<String>,
}

/// `choices[].logprobs` of text completions (the legacy shape).
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    pub text_offset: Vec<u32>,
}

/// One choice of a text completion (or of its stream chunk).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `text_completion` (also each stream chunk).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    /// Always there in an answer; in a stream's chunks as in chat's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    pub system_fingerprint: Option<String>,
}

/// One model.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}
