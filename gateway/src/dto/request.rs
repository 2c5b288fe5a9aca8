//! Request bodies as they arrive. Unknown fields are ignored; known ones are validated by
//! `crate::convert`, which also refuses the ones this server does not support.

use serde::Deserialize;
use serde_json::Value;

/// The sampling fields both generation endpoints take.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct SamplingFields {
    pub temperature: Option<Value>,
    pub top_p: Option<Value>,
    pub seed: Option<Value>,
    pub presence_penalty: Option<Value>,
    pub frequency_penalty: Option<Value>,
    pub logit_bias: Option<Value>,
    /// Extension: top-k sampling.
    pub top_k: Option<Value>,
    /// Extension: min-p sampling.
    pub min_p: Option<Value>,
    /// Extension: Hugging Face style repetition penalty.
    pub repetition_penalty: Option<Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct ChatCompletionRequest {
    pub model: Option<Value>,
    pub messages: Option<Value>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    pub max_tokens: Option<Value>,
    pub max_completion_tokens: Option<Value>,
    pub stream: Option<Value>,
    pub stream_options: Option<Value>,
    pub stop: Option<Value>,
    pub n: Option<Value>,
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<Value>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<Value>,
    pub response_format: Option<Value>,
    /// Extension: a grammar the output follows, in llguidance's Lark dialect.
    pub grammar: Option<Value>,
    pub user: Option<Value>,
    /// Extension: extra chat template variables (e.g. `{"enable_thinking": false}`).
    pub chat_template_kwargs: Option<Value>,
    /// How hard a reasoning model thinks: given to the chat template (see
    /// `convert::effort_kwargs`).
    pub reasoning_effort: Option<Value>,
    /// Extension (vLLM's): the answer continues the final assistant message.
    pub continue_final_message: Option<Value>,
    /// vLLM's companion of `continue_final_message`: only `true`, or `false` with it, is served.
    pub add_generation_prompt: Option<Value>,
    // Known OpenAI fields this server does not implement: refused when set.
    pub functions: Option<Value>,
    pub function_call: Option<Value>,
    pub audio: Option<Value>,
    pub modalities: Option<Value>,
    pub prediction: Option<Value>,
    pub web_search_options: Option<Value>,
}

/// `POST /v1/completions`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct CompletionRequest {
    pub model: Option<Value>,
    pub prompt: Option<Value>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    pub max_tokens: Option<Value>,
    pub stream: Option<Value>,
    pub stream_options: Option<Value>,
    pub stop: Option<Value>,
    pub n: Option<Value>,
    pub logprobs: Option<Value>,
    pub user: Option<Value>,
    pub echo: Option<Value>,
    pub suffix: Option<Value>,
    pub best_of: Option<Value>,
    /// As in chat (an extension of the completions API, as vLLM has it): JSON output.
    pub response_format: Option<Value>,
    /// Extension: a grammar the output follows, in llguidance's Lark dialect.
    pub grammar: Option<Value>,
}

/// `POST /v1/tokens/count` and `POST /v1/tokenize`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct TokenizeRequest {
    pub model: Option<Value>,
    pub text: Option<Value>,
    pub prompt: Option<Value>,
    pub messages: Option<Value>,
    pub tools: Option<Value>,
    /// As in chat: a forced call's opening is part of the prompt, so it counts.
    pub tool_choice: Option<Value>,
    pub add_special_tokens: Option<Value>,
    /// As in chat: count the prompt that continues the final assistant message.
    pub continue_final_message: Option<Value>,
    /// As in chat: template variables (and those an effort implies) can change the prompt.
    pub chat_template_kwargs: Option<Value>,
    pub reasoning_effort: Option<Value>,
}
