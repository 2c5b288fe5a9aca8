//! What generation responses share, streamed or not: the reported model name, OpenAI's finish
//! reasons, usage, chat-style log-probabilities.

use zeta_proto::v1;

use crate::dto::response::{
    ChoiceLogprobs, CompletionTokensDetails, PromptTokensDetails, TokenLogprob, TopLogprob, Usage,
};

/// The model name a response reports: the one the request named (an alias stays the alias the
/// client used), or the daemon's name for the model it chose when the request named none.
pub fn reported_model(requested: &str, served: String) -> String {
    if requested.is_empty() { served } else { requested.to_string() }
}

/// OpenAI's name for a finish reason.
pub fn finish_reason(f: &v1::Finished) -> &'static str {
    match v1::FinishReason::try_from(f.reason).unwrap_or(v1::FinishReason::Stop) {
        v1::FinishReason::Length => "length",
        v1::FinishReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

/// Usage in OpenAI's shape.
pub fn usage(f: &v1::Finished) -> Usage {
    let u = f.usage.unwrap_or_default();
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: PromptTokensDetails { cached_tokens: u.cached_tokens },
        completion_tokens_details: CompletionTokensDetails { reasoning_tokens: u.reasoning_tokens },
    }
}

/// Chat-style log-probabilities.
pub fn chat_logprobs(l: &[v1::TokenLogprob]) -> ChoiceLogprobs {
    ChoiceLogprobs {
        content: l
            .iter()
            .map(|t| TokenLogprob {
                token: t.token.clone(),
                logprob: t.logprob,
                bytes: t.bytes.to_vec(),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|a| TopLogprob { token: a.token.clone(), logprob: a.logprob, bytes: a.bytes.to_vec() })
                    .collect(),
            })
            .collect(),
    }
}
