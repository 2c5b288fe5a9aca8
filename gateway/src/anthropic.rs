//! Anthropic's Messages API shape: the request body, its one conversion to the daemon's
//! `GenerateRequest` (the same domain request the OpenAI endpoints make), the answer, and
//! Anthropic's error envelope `{"type": "error", "error": {"type", "message"}}` with its own
//! table from HTTP status to error type. The route and its stream events are
//! `routes::messages`.
//!
//! Mapping: `system` (a string or text blocks) becomes a system message; a user message's
//! `tool_result` blocks become tool messages (before its text; `is_error` prefixes the text with
//! "Error: ", as no chat template has a place for a failed result); an assistant's `tool_use` blocks
//! become its tool calls; `tool_choice` `auto` / `any` / `tool` / `none` map to auto / required /
//! a named function / none; `thinking` `enabled` returns the model's reasoning as thinking
//! blocks (otherwise reasoning is left out of the answer, and `disabled` asks the template not to
//! think).

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeta_proto::v1;

use crate::convert::{
    TEXT, answered_calls, array, boolean, distinct, function_tool, integer, model, named_choice, number, present,
    stop_list, string, text_parts, tool_result, type_name,
};
use crate::error::ApiError;

/// `POST /v1/messages` and `POST /v1/messages/count_tokens`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct MessagesRequest {
    pub model: Option<Value>,
    pub messages: Option<Value>,
    pub system: Option<Value>,
    pub max_tokens: Option<Value>,
    pub stop_sequences: Option<Value>,
    pub temperature: Option<Value>,
    pub top_p: Option<Value>,
    pub top_k: Option<Value>,
    pub stream: Option<Value>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
    pub metadata: Option<Value>,
    // Known fields this server does not implement: refused when set.
    pub mcp_servers: Option<Value>,
    pub container: Option<Value>,
}

/// What the Messages endpoint keeps of a request to shape its answer.
#[derive(Clone, Debug, Default)]
pub struct MessagesOptions {
    /// Stream the typed events.
    pub stream: bool,
    /// Return reasoning as thinking blocks.
    pub thinking: bool,
    /// The model name the client asked for.
    pub model: String,
}

/// One Anthropic message as wire messages (a user turn with tool results becomes several).
fn message(
    i: usize,
    m: &Value,
    out: &mut Vec<v1::Message>,
    results: &mut Vec<(usize, String)>,
) -> Result<(), ApiError> {
    let field = format!("messages[{i}]");
    let obj = m.as_object().ok_or_else(|| ApiError::invalid(&field, "each message must be an object"))?;
    let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
    if role != "user" && role != "assistant" {
        return Err(ApiError::invalid(
            format!("{field}.role"),
            format!("must be 'user' or 'assistant', got '{}'", zeta_proto::edge::quote(role)),
        ));
    }
    let content = obj.get("content").ok_or_else(|| ApiError::invalid(format!("{field}.content"), "is required"))?;
    let blocks: Vec<Value> = match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        other => {
            return Err(ApiError::invalid(
                format!("{field}.content"),
                format!("must be a string or an array of blocks, got {}", type_name(other)),
            ));
        }
    };
    let (mut text, mut calls) = (Vec::new(), Vec::new());
    for (j, b) in blocks.iter().enumerate() {
        let bf = format!("{field}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push(
                b.get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid(format!("{bf}.text"), "a text block needs a string 'text'"))?
                    .to_string(),
            ),
            Some("tool_use") if role == "assistant" => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                if !input.is_object() {
                    return Err(ApiError::invalid(format!("{bf}.input"), "must be an object"));
                }
                calls.push(v1::ToolCall {
                    id: b.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                    name: name.to_string(),
                    arguments: input.to_string(),
                });
            }
            Some("tool_result") if role == "user" => {
                let mut result = tool_result(
                    b.get("tool_use_id").and_then(Value::as_str),
                    format!("{bf}.tool_use_id"),
                    b.get("content"),
                    format!("{bf}.content"),
                    TEXT,
                )?;
                // Chat templates have no failed-result slot: the model reads the failure in the text.
                if boolean(&b.get("is_error").cloned(), &format!("{bf}.is_error"))? == Some(true) {
                    let text = result.content.unwrap_or_default();
                    result.content = Some(if text.is_empty() { "Error".into() } else { format!("Error: {text}") });
                }
                out.push(result);
                results.push((out.len() - 1, format!("{bf}.tool_use_id")));
            }
            Some("thinking" | "redacted_thinking") if role == "assistant" => {}
            Some(other) => {
                return Err(ApiError::unsupported(
                    format!("{bf}.type"),
                    format!("'{other}' blocks are not supported in a {role} message"),
                ));
            }
            None => return Err(ApiError::invalid(format!("{bf}.type"), "each block needs a 'type'")),
        }
    }
    if !text.is_empty() || !calls.is_empty() || out.last().is_none_or(|m| m.role != "tool") {
        let content = (!text.is_empty() || calls.is_empty()).then(|| text.join("\n"));
        out.push(v1::Message { role: role.to_string(), content, tool_calls: calls, ..Default::default() });
    }
    Ok(())
}

fn tools(v: &Option<Value>) -> Result<Vec<v1::Tool>, ApiError> {
    array(v, "tools")?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
                return Err(ApiError::unsupported(
                    format!("tools[{i}].type"),
                    format!("server tools ('{kind}') are not supported"),
                ));
            }
            let t = t.as_object().ok_or_else(|| ApiError::invalid(format!("tools[{i}]"), "must be an object"))?;
            let mut tool = function_tool(t, &format!("tools[{i}]"), "input_schema")?;
            if tool.parameters_json.is_empty() {
                tool.parameters_json = json!({"type": "object"}).to_string();
            }
            Ok(tool)
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|t| distinct(t, |i| format!("tools[{i}].name")))
}

fn tool_choice(v: &Option<Value>, tools: &[v1::Tool]) -> Result<Option<v1::ToolChoice>, ApiError> {
    use v1::tool_choice::Mode;
    let Some(v) = present(v) else { return Ok(None) };
    let choice = |mode: Mode, f: &str| Some(v1::ToolChoice { mode: mode as i32, function: f.into() });
    let out = match v.get("type").and_then(Value::as_str) {
        Some("auto") => choice(Mode::Auto, ""),
        Some("none") => choice(Mode::None, ""),
        Some("any") => choice(Mode::Required, ""),
        Some("tool") => {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            Some(named_choice(name, tools, "tool_choice.name")?)
        }
        _ => return Err(ApiError::invalid("tool_choice.type", "must be one of auto, any, tool, none")),
    };
    if tools.is_empty() && matches!(v.get("type").and_then(Value::as_str), Some("any" | "tool")) {
        return Err(ApiError::invalid("tool_choice", "'tool_choice' requires 'tools'"));
    }
    Ok(out)
}

/// The conversation (system and messages), tools and tool choice of a Messages request: what
/// generation and counting share.
pub fn conversation(req: &MessagesRequest) -> Result<(v1::Chat, Vec<v1::Tool>, Option<v1::ToolChoice>), ApiError> {
    let (mut messages, mut results) = (Vec::new(), Vec::new());
    if let Some(s) = present(&req.system) {
        messages.push(v1::Message {
            role: "system".into(),
            content: Some(text_parts(s, "system", TEXT)?),
            ..Default::default()
        });
    }
    match present(&req.messages) {
        Some(Value::Array(a)) if !a.is_empty() => {
            for (i, m) in a.iter().enumerate() {
                message(i, m, &mut messages, &mut results)?;
            }
        }
        Some(Value::Array(_)) | None => {
            return Err(ApiError::invalid("messages", "'messages' must be a non-empty array"));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "messages",
                format!("'messages' must be an array, got {}", type_name(other)),
            ));
        }
    }
    answered_calls(&messages, &results)?;
    // A final assistant turn is a prefill: the answer continues its text (Anthropic's rule, and
    // its refusal of trailing whitespace, which no tokenizer continues cleanly).
    let last = present(&req.messages).and_then(Value::as_array).map_or(0, |a| a.len().saturating_sub(1));
    if messages.last().is_some_and(|m| m.role == "assistant" && !m.tool_calls.is_empty()) {
        return Err(ApiError::invalid(
            format!("messages[{last}].content"),
            "a final assistant message cannot end with tool_use: send its tool_result in a user message",
        ));
    }
    let prefill = messages.last().filter(|m| m.role == "assistant");
    if let Some(text) = prefill.and_then(|m| m.content.as_deref())
        && text.ends_with(char::is_whitespace)
    {
        return Err(ApiError::invalid(
            format!("messages[{last}].content"),
            "final assistant content cannot end with trailing whitespace",
        ));
    }
    let continue_final_message = prefill.is_some();
    let tools = tools(&req.tools)?;
    let choice = tool_choice(&req.tool_choice, &tools)?;
    Ok((v1::Chat { messages, continue_final_message }, tools, choice))
}

/// A Messages request as the daemon's `GenerateRequest`.
pub fn convert(req: &MessagesRequest, request_id: &str) -> Result<(v1::GenerateRequest, MessagesOptions), ApiError> {
    let model = model(&req.model)?;
    for (v, name) in [(&req.mcp_servers, "mcp_servers"), (&req.container, "container")] {
        if present(v).is_some() {
            return Err(ApiError::unsupported(name, format!("'{name}' is not supported by this server")));
        }
    }
    let (chat, tools, tool_choice) = conversation(req)?;
    let max_tokens = integer(&req.max_tokens, "max_tokens", 1, u32::MAX as i64)?
        .ok_or_else(|| ApiError::invalid("max_tokens", "'max_tokens' is required"))?;
    let stream = match present(&req.stream) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid("stream", format!("'stream' must be a boolean, got {}", type_name(other))));
        }
    };
    let thinking = thinking(req)?;
    let _ = string(&req.metadata.as_ref().and_then(|m| m.get("user_id")).cloned(), "metadata.user_id")?;
    // Anthropic's is a list: a bare string is a client written for another API.
    if let Some(Value::String(_)) = present(&req.stop_sequences) {
        return Err(ApiError::invalid("stop_sequences", "must be an array of strings, not a string"));
    }
    let stop = stop_list(&req.stop_sequences).map_err(|e| {
        let param = e.param.as_deref().map_or("stop_sequences".into(), |p| p.replacen("stop", "stop_sequences", 1));
        let message = e.message.replace("'stop'", "'stop_sequences'");
        ApiError { param: Some(param), message, ..e }
    })?;
    let sampling = v1::SamplingParams {
        temperature: number(&req.temperature, "temperature", 0.0, 1.0)?,
        top_p: crate::convert::top_p(&req.top_p, "top_p")?,
        top_k: integer(&req.top_k, "top_k", 0, 1 << 20)?.map(|k| k as u32),
        ..Default::default()
    };
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(v1::generate_request::Input::Chat(chat)),
        sampling: Some(sampling),
        max_tokens: Some(max_tokens as u32),
        stop,
        request_id: request_id.into(),
        tools,
        tool_choice,
        separate_reasoning: true,
        chat_template_kwargs_json: thinking_kwargs(thinking),
        ..Default::default()
    };
    Ok((out, MessagesOptions { stream, thinking: thinking == Some(true), model }))
}

/// A Messages count request as the daemon's `TokenizeRequest`: the prompt the same message
/// request would render, its thinking setting included (a template may write it into the prompt).
pub fn count(req: &MessagesRequest) -> Result<v1::TokenizeRequest, ApiError> {
    let model = model(&req.model)?;
    let (chat, tools, tool_choice) = conversation(req)?;
    Ok(v1::TokenizeRequest {
        model,
        input: Some(v1::tokenize_request::Input::Chat(chat)),
        tools,
        tool_choice,
        count_only: true,
        chat_template_kwargs_json: thinking_kwargs(thinking(req)?),
        ..Default::default()
    })
}

/// `thinking.type`: on, off, or the template's own default when unset.
fn thinking(req: &MessagesRequest) -> Result<Option<bool>, ApiError> {
    match present(&req.thinking).map(|t| t.get("type").and_then(Value::as_str)) {
        None => Ok(None),
        Some(Some("enabled")) => Ok(Some(true)),
        Some(Some("disabled")) => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid("thinking.type", "must be 'enabled' or 'disabled'")),
    }
}

/// The template variable thinking sets (as Qwen3's template reads it).
fn thinking_kwargs(thinking: Option<bool>) -> String {
    thinking.map(|t| json!({"enable_thinking": t}).to_string()).unwrap_or_default()
}

/// Anthropic's name for a finish reason, and the stop sequence that ended the answer.
pub fn stop_reason(f: &v1::Finished) -> (&'static str, Option<String>) {
    match v1::FinishReason::try_from(f.reason).unwrap_or(v1::FinishReason::Stop) {
        v1::FinishReason::Length => ("max_tokens", None),
        v1::FinishReason::ToolCalls => ("tool_use", None),
        _ if !f.stop_sequence.is_empty() => ("stop_sequence", Some(f.stop_sequence.clone())),
        _ => ("end_turn", None),
    }
}

/// Token counts in Anthropic's shape.
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Always 0: the prefix cache fills as a side effect, never as a write a client pays for;
    /// Anthropic's clients expect the field.
    pub cache_creation_input_tokens: u32,
    pub cache_read_input_tokens: u32,
}

impl Usage {
    /// Anthropic counts the prompt tokens read from the cache apart from `input_tokens`.
    pub fn new(prompt_tokens: u32, cached_tokens: u32, output_tokens: u32) -> Usage {
        Usage {
            input_tokens: prompt_tokens.saturating_sub(cached_tokens),
            output_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached_tokens,
        }
    }
}

/// A whole answer.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<Value>,
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// Anthropic's error type for an HTTP status (its one table).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An error's body in Anthropic's envelope.
pub fn error_body(e: &ApiError) -> Value {
    let message = match &e.param {
        // Anthropic's envelope has no param: the message names the field, once.
        Some(p) if !e.message.contains(p.as_str()) => format!("{p}: {}", e.message),
        _ => e.message.clone(),
    };
    json!({"type": "error", "error": {"type": error_type(e.status.as_u16()), "message": message}})
}

/// An error as an Anthropic client expects it.
pub fn error_response(e: ApiError) -> Response {
    let mut resp = (e.status, axum::Json(error_body(&e))).into_response();
    if let Some(r) = e.retry_after {
        resp.headers_mut().insert("retry-after", HeaderValue::from(r));
    }
    resp
}
