//! The one place request bodies become the daemon's domain request (`zeta.mlx.v1`): every field
//! is checked here, and errors name the parameter, the value and the allowed range. A known field
//! or value the server does not support is refused, never silently ignored.

use serde_json::Value;
use zeta_proto::v1;

use crate::dto::request::{ChatCompletionRequest, CompletionRequest, SamplingFields, TokenizeRequest};
use crate::error::ApiError;

mod constraint;
mod fields;
pub(crate) mod tools;

pub(crate) use constraint::{constraint, constraint_field, json_schema};
pub(crate) use fields::{array, boolean, integer, number, present, stop_list, string, top_p, type_name};
pub(crate) use tools::{answered_calls, distinct, function_tool, named_choice, tool_result};

use fields::{logit_bias, n, refuse_if_set, token_ids};
use tools::{tool_choice, tools};

/// What a chat request asks of the response, beyond the generation itself.
#[derive(Clone, Debug, Default)]
pub struct ChatOptions {
    /// Stream as SSE.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// Return log-probabilities.
    pub logprobs: bool,
    /// Only the first tool call is kept (`parallel_tool_calls: false`).
    pub single_tool_call: bool,
    /// The model name the client asked for.
    pub model: String,
}

/// The `model` field (empty selects the daemon's default model), at most
/// [`zeta_proto::edge::MAX_MODEL_REF_BYTES`] long.
pub fn model(v: &Option<Value>) -> Result<String, ApiError> {
    let m = string(v, "model")?.unwrap_or("");
    let limit = zeta_proto::edge::MAX_MODEL_REF_BYTES;
    if m.len() > limit {
        return Err(ApiError::invalid(
            "model",
            format!("'model' is {} bytes, over the limit of {limit} bytes for a model name", m.len()),
        ));
    }
    Ok(m.to_string())
}

fn sampling(c: &SamplingFields) -> Result<v1::SamplingParams, ApiError> {
    let top_p = fields::top_p(&c.top_p, "top_p")?;
    Ok(v1::SamplingParams {
        temperature: number(&c.temperature, "temperature", 0.0, 2.0)?,
        top_p,
        top_k: integer(&c.top_k, "top_k", 0, 1 << 20)?.map(|k| k as u32),
        min_p: number(&c.min_p, "min_p", 0.0, 1.0)?,
        repetition_penalty: number(&c.repetition_penalty, "repetition_penalty", 0.01, 10.0)?,
        presence_penalty: number(&c.presence_penalty, "presence_penalty", -2.0, 2.0)?,
        frequency_penalty: number(&c.frequency_penalty, "frequency_penalty", -2.0, 2.0)?,
        logit_bias: logit_bias(&c.logit_bias)?,
        seed: integer(&c.seed, "seed", i64::MIN, i64::MAX)?.map(|s| s as u64),
    })
}

fn stream_flags(stream: &Option<Value>, options: &Option<Value>) -> Result<(bool, bool), ApiError> {
    let stream = boolean(stream, "stream")?.unwrap_or(false);
    let include_usage = match present(options) {
        None => false,
        Some(o) => {
            if !stream {
                return Err(ApiError::invalid(
                    "stream_options",
                    "'stream_options' is only allowed when 'stream' is true",
                ));
            }
            let obj = o
                .as_object()
                .ok_or_else(|| ApiError::invalid("stream_options", "'stream_options' must be an object"))?;
            boolean(&obj.get("include_usage").cloned(), "stream_options.include_usage")?.unwrap_or(false)
        }
    };
    Ok((stream, include_usage))
}

/// The part types chat completions and Messages take as text.
pub(crate) const TEXT: &[&str] = &["text"];

/// Text content as every API sends it: a string, or an array of parts whose type is one of
/// `kinds` (`text`; the Responses API's `input_text` / `output_text`), joined by lines. Media
/// parts (the served models read text only) are unsupported, other types invalid; errors name
/// `field[j]`.
pub(crate) fn text_parts(v: &Value, field: &str, kinds: &[&str]) -> Result<String, ApiError> {
    const MEDIA: [&str; 7] = ["image_url", "input_image", "input_audio", "input_file", "file", "image", "document"];
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let part = format!("{field}[{j}]");
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    kind if kinds.contains(&kind) => {
                        // A refusal part (an earlier answer echoed back) holds its text under its name.
                        let key = if kind == "refusal" { "refusal" } else { "text" };
                        out.push(
                            p.get(key)
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    ApiError::invalid(
                                        format!("{part}.{key}"),
                                        format!("a {kind} part needs a string '{key}'"),
                                    )
                                })?
                                .to_string(),
                        )
                    }
                    kind if MEDIA.contains(&kind) => {
                        return Err(ApiError::unsupported(
                            format!("{part}.type"),
                            format!(
                                "content parts of type '{kind}' are not supported: the served models read text only"
                            ),
                        ));
                    }
                    other => {
                        return Err(ApiError::invalid(
                            format!("{part}.type"),
                            format!("unknown content part type '{}'", zeta_proto::edge::quote(other)),
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        other => Err(ApiError::invalid(
            field,
            format!("content must be a string or an array of text parts, got {}", type_name(other)),
        )),
    }
}

fn message(i: usize, m: &Value) -> Result<v1::Message, ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let obj =
        m.as_object().ok_or_else(|| ApiError::invalid(format!("messages[{i}]"), "each message must be an object"))?;
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(field("role"), "each message needs a string 'role'"))?;
    // An earlier answer echoed back may hold refusal parts beside its text.
    let kinds: &[&str] = if role == "assistant" { &["text", "refusal"] } else { TEXT };
    let content = match obj.get("content").filter(|c| !c.is_null()) {
        Some(c) => Some(text_parts(c, &field("content"), kinds)?),
        // An earlier answer the model refused comes back as its `refusal` (OpenAI's clients
        // send the message as they received it): that text was the turn's answer.
        None if role == "assistant" => match obj.get("refusal").filter(|r| !r.is_null()) {
            Some(Value::String(r)) => Some(r.clone()),
            Some(other) => {
                return Err(ApiError::invalid(field("refusal"), format!("must be a string, got {}", type_name(other))));
            }
            None => None,
        },
        None => None,
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = obj.get("tool_calls").filter(|c| !c.is_null()) {
        let calls = calls.as_array().ok_or_else(|| ApiError::invalid(field("tool_calls"), "must be an array"))?;
        for (j, c) in calls.iter().enumerate() {
            let f = c.get("function").and_then(Value::as_object).ok_or_else(|| {
                ApiError::invalid(
                    format!("messages[{i}].tool_calls[{j}].function"),
                    "each tool call needs a 'function' object",
                )
            })?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(format!("messages[{i}].tool_calls[{j}].function.name"), "must be a string")
            })?;
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => Value::Object(o.clone()).to_string(),
                None | Some(Value::Null) => "{}".into(),
                Some(_) => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        "must be a JSON string",
                    ));
                }
            };
            tool_calls.push(v1::ToolCall {
                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                name: name.to_string(),
                arguments,
            });
        }
    }
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        Ok(string(&obj.get(k).cloned(), &field(k))?.map(String::from))
    };
    let tool_call_id = text("tool_call_id")?.unwrap_or_default();
    zeta_proto::edge::check_message(role, content.is_some(), !tool_calls.is_empty(), &tool_call_id)
        .map_err(|(f, why)| ApiError::invalid(field(f), why))?;
    Ok(v1::Message {
        role: role.to_string(),
        content,
        name: text("name")?.unwrap_or_default(),
        tool_calls,
        tool_call_id,
        reasoning_content: text("reasoning_content")?,
    })
}

/// A reasoning effort (`none`, `minimal`, `low`, `medium`, `high`, `xhigh`) from `field`.
pub(crate) fn reasoning_effort(v: Option<&Value>, field: &str) -> Result<Option<String>, ApiError> {
    const EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];
    match v.filter(|e| !e.is_null()) {
        None => Ok(None),
        Some(Value::String(e)) if EFFORTS.contains(&e.as_str()) => Ok(Some(e.clone())),
        Some(other) => Err(ApiError::invalid(
            field,
            format!(
                "must be one of {}, got {}",
                EFFORTS.join(", "),
                match other {
                    Value::String(s) => format!("'{s}'"),
                    v => type_name(v).to_string(),
                }
            ),
        )),
    }
}

/// The chat template variables a reasoning effort sets: `none` turns thinking off
/// (`enable_thinking`, as Qwen3's template reads it); any other effort turns it on and is passed
/// as `reasoning_effort` (gpt-oss's template writes it into the system message).
pub(crate) fn effort_kwargs(effort: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("enable_thinking".into(), Value::Bool(effort != "none"));
    if effort != "none" {
        m.insert("reasoning_effort".into(), Value::String(effort.into()));
    }
    m
}

/// A chat completion request as the daemon's `GenerateRequest`.
pub fn chat(req: &ChatCompletionRequest, request_id: &str) -> Result<(v1::GenerateRequest, ChatOptions), ApiError> {
    refuse_if_set(&req.functions, "functions", "use 'tools'")?;
    refuse_if_set(&req.function_call, "function_call", "use 'tool_choice'")?;
    refuse_if_set(&req.audio, "audio", "the served models produce text only")?;
    refuse_if_set(&req.prediction, "prediction", "predicted outputs are not implemented")?;
    refuse_if_set(&req.web_search_options, "web_search_options", "there is no web search")?;
    if let Some(m) = present(&req.modalities)
        && m.as_array().is_none_or(|a| a.iter().any(|x| x.as_str() != Some("text")))
    {
        return Err(ApiError::unsupported("modalities", "only [\"text\"] is supported"));
    }
    n(&req.n)?;
    let constraint = constraint(&req.response_format, &req.grammar)?;
    let _ = string(&req.user, "user")?;
    let model = model(&req.model)?;
    let messages = match present(&req.messages) {
        None => return Err(ApiError::invalid("messages", "'messages' is required")),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid("messages", "'messages' must not be empty"));
        }
        Some(Value::Array(a)) => a.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid(
                "messages",
                format!("'messages' must be an array, got {}", type_name(other)),
            ));
        }
    };
    let (stream, include_usage) = stream_flags(&req.stream, &req.stream_options)?;
    let logprobs = boolean(&req.logprobs, "logprobs")?.unwrap_or(false);
    let top = integer(&req.top_logprobs, "top_logprobs", 0, zeta_proto::edge::MAX_TOP_LOGPROBS)?;
    if top.is_some() && !logprobs {
        return Err(ApiError::invalid("top_logprobs", "'top_logprobs' requires 'logprobs': true"));
    }
    let max_tokens = integer(&req.max_completion_tokens, "max_completion_tokens", 1, u32::MAX as i64)?.or(integer(
        &req.max_tokens,
        "max_tokens",
        1,
        u32::MAX as i64,
    )?);
    let tools = tools(&req.tools)?;
    let tool_choice = tool_choice(&req.tool_choice, &tools)?;
    let parallel = boolean(&req.parallel_tool_calls, "parallel_tool_calls")?.unwrap_or(true);
    let kwargs = template_kwargs(req.reasoning_effort.as_ref(), &req.chat_template_kwargs)?;
    let sampling = sampling(&req.sampling)?;
    let continue_final_message = boolean(&req.continue_final_message, "continue_final_message")?.unwrap_or(false);
    // A prompt that ends after a closed turn, with no assistant opening, is not one this server
    // makes: that is only right when continuing the final message.
    if boolean(&req.add_generation_prompt, "add_generation_prompt")? == Some(false) && !continue_final_message {
        return Err(ApiError::unsupported(
            "add_generation_prompt",
            "'add_generation_prompt: false' is only supported with 'continue_final_message: true'",
        ));
    }
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat { messages, continue_final_message })),
        sampling: Some(sampling),
        max_tokens: max_tokens.map(|m| m as u32),
        stop: stop_list(&req.stop)?,
        logprobs: logprobs.then_some(top.unwrap_or(0) as u32),
        request_id: request_id.into(),
        tools,
        tool_choice,
        separate_reasoning: true,
        chat_template_kwargs_json: kwargs,
        constraint,
        // Chat Completions has no such setting: a conversation over the context is a 400.
        truncate_oldest_turns: false,
        max_tokens_cap: None,
    };
    Ok((out, ChatOptions { stream, include_usage, logprobs, single_tool_call: !parallel, model }))
}

/// What a text completion request asks of the response.
#[derive(Clone, Debug, Default)]
pub struct CompletionOptions {
    /// Stream as SSE.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// Return log-probabilities (legacy shape).
    pub logprobs: bool,
    /// The model name the client asked for.
    pub model: String,
}

/// A text completion request as the daemon's `GenerateRequest`.
pub fn completion(
    req: &CompletionRequest,
    request_id: &str,
) -> Result<(v1::GenerateRequest, CompletionOptions), ApiError> {
    n(&req.n)?;
    if boolean(&req.echo, "echo")? == Some(true) {
        return Err(ApiError::unsupported("echo", "'echo' is not supported"));
    }
    if string(&req.suffix, "suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported("suffix", "'suffix' (fill-in-the-middle) is not supported"));
    }
    if integer(&req.best_of, "best_of", 1, 20)?.is_some_and(|b| b > 1) {
        return Err(ApiError::unsupported("best_of", "only best_of=1 is supported"));
    }
    let _ = string(&req.user, "user")?;
    let model = model(&req.model)?;
    let input = match present(&req.prompt) {
        None => return Err(ApiError::invalid("prompt", "'prompt' is required")),
        Some(Value::String(s)) => v1::generate_request::Input::Prompt(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            v1::generate_request::Input::Prompt(a[0].as_str().unwrap_or_default().to_string())
        }
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_number) => {
            v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: token_ids(a, "prompt")? })
        }
        Some(Value::Array(a))
            if a.len() == 1 && a[0].as_array().is_some_and(|t| !t.is_empty() && t.iter().all(Value::is_number)) =>
        {
            let ids = token_ids(a[0].as_array().map(Vec::as_slice).unwrap_or_default(), "prompt[0]")?;
            v1::generate_request::Input::PromptTokens(v1::TokenIds { ids })
        }
        Some(Value::Array(a)) if a.len() > 1 => {
            return Err(ApiError::unsupported(
                "prompt",
                "one prompt per request is supported (batches of prompts are not)",
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid("prompt", "'prompt' must be a string or an array of token ids"));
        }
    };
    let (stream, include_usage) = stream_flags(&req.stream, &req.stream_options)?;
    let logprobs = integer(&req.logprobs, "logprobs", 0, 5)?;
    let sampling = sampling(&req.sampling)?;
    let max_tokens = integer(&req.max_tokens, "max_tokens", 1, u32::MAX as i64)?;
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(input),
        sampling: Some(sampling),
        max_tokens: max_tokens.map(|m| m as u32),
        // The legacy API's default is 16 tokens: a cap, so a long prompt is never refused for it.
        max_tokens_cap: max_tokens.is_none().then_some(16),
        stop: stop_list(&req.stop)?,
        logprobs: logprobs.map(|n| n as u32),
        request_id: request_id.into(),
        constraint: constraint(&req.response_format, &req.grammar)?,
        ..Default::default()
    };
    Ok((out, CompletionOptions { stream, include_usage, logprobs: logprobs.is_some(), model }))
}

/// The chat template's extra variables as JSON (empty for none): `reasoning_effort`'s, then
/// `chat_template_kwargs`, whose explicit variables win over what the effort implies.
fn template_kwargs(effort: Option<&Value>, explicit: &Option<Value>) -> Result<String, ApiError> {
    let mut kwargs = match reasoning_effort(effort, "reasoning_effort")? {
        Some(e) => effort_kwargs(&e),
        None => serde_json::Map::new(),
    };
    match present(explicit) {
        None => {}
        Some(Value::Object(o)) => kwargs.extend(o.clone()),
        Some(_) => return Err(ApiError::invalid("chat_template_kwargs", "must be an object")),
    }
    Ok(if kwargs.is_empty() { String::new() } else { Value::Object(kwargs).to_string() })
}

/// A token-counting request (`/v1/tokens/count`, `/v1/tokenize`): the same validation as chat
/// for messages, tools, tool choice and template variables, so the count is that of the prompt a
/// chat would use.
pub fn tokenize(dto: &TokenizeRequest, return_tokens: bool) -> Result<v1::TokenizeRequest, ApiError> {
    let model = model(&dto.model)?;
    let text = dto.text.as_ref().or(dto.prompt.as_ref()).filter(|v| !v.is_null());
    let input = match (text, dto.messages.as_ref().filter(|v| !v.is_null())) {
        (Some(Value::String(t)), None) => v1::tokenize_request::Input::Text(t.clone()),
        (Some(_), None) => return Err(ApiError::invalid("text", "'text' must be a string")),
        (None, Some(Value::Array(a))) if !a.is_empty() => v1::tokenize_request::Input::Chat(v1::Chat {
            messages: a.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<_, _>>()?,
            continue_final_message: boolean(&dto.continue_final_message, "continue_final_message")?.unwrap_or(false),
        }),
        (None, Some(_)) => return Err(ApiError::invalid("messages", "'messages' must be a non-empty array")),
        (Some(_), Some(_)) => return Err(ApiError::invalid("messages", "send either 'text' or 'messages', not both")),
        (None, None) => return Err(ApiError::invalid("text", "'text' or 'messages' is required")),
    };
    let tools = tools(&dto.tools)?;
    let tool_choice = tool_choice(&dto.tool_choice, &tools)?;
    let chat_template_kwargs_json = template_kwargs(dto.reasoning_effort.as_ref(), &dto.chat_template_kwargs)?;
    if matches!(input, v1::tokenize_request::Input::Text(_)) && !chat_template_kwargs_json.is_empty() {
        let field =
            if present(&dto.chat_template_kwargs).is_some() { "chat_template_kwargs" } else { "reasoning_effort" };
        return Err(ApiError::invalid(field, "only applies to 'messages'; a text is tokenized as it is"));
    }
    Ok(v1::TokenizeRequest {
        model,
        input: Some(input),
        add_special_tokens: boolean(&dto.add_special_tokens, "add_special_tokens")?.unwrap_or(true),
        tools,
        return_tokens,
        // A count ships no ids: a 16 MB text is millions of them.
        count_only: !return_tokens,
        tool_choice,
        chat_template_kwargs_json,
    })
}

/// Parses a JSON body into a DTO, with OpenAI-style errors for bad JSON.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::invalid("body", format!("the request body is not valid UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid("body", format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "body",
            format!("the request body must be a JSON object, got {}", type_name(&value)),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid("body", format!("the request body does not fit the schema: {e}")))
}
