//! The one place request bodies become the daemon's domain request (`zeta.mlx.v1`): every field
//! is checked here, and errors name the parameter, the value and the allowed range. A known field
//! or value the server does not support is refused, never silently ignored.

use serde_json::Value;
use zeta_proto::v1;

use crate::dto::request::{ChatCompletionRequest, CompletionRequest, SamplingFields, TokenizeRequest};
use crate::error::ApiError;

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

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

pub(crate) fn number(v: &Option<Value>, name: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    let x = v
        .as_f64()
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a number, got {}", type_name(v))))?;
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid(name, format!("'{name}' must be between {lo} and {hi}, got {x}")));
    }
    Ok(Some(x as f32))
}

pub(crate) fn integer(v: &Option<Value>, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    let x = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be an integer, got {}", describe(v))))?;
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid(name, format!("'{name}' must be between {lo} and {hi}, got {x}")));
    }
    Ok(Some(x))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => type_name(other).to_string(),
    }
}

pub(crate) fn boolean(v: &Option<Value>, name: &str) -> Result<Option<bool>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    v.as_bool()
        .map(Some)
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a boolean, got {}", type_name(v))))
}

pub(crate) fn string<'a>(v: &'a Option<Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    v.as_str()
        .map(Some)
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a string, got {}", type_name(v))))
}

fn refuse_if_set(v: &Option<Value>, name: &str, why: &str) -> Result<(), ApiError> {
    match present(v) {
        Some(_) => Err(ApiError::unsupported(name, format!("'{name}' is not supported by this server: {why}"))),
        None => Ok(()),
    }
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

/// Token ids of a prompt: each an integer that fits a token id (the daemon then checks them
/// against the model's vocabulary).
fn token_ids(a: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
                ApiError::invalid(
                    format!("{param}[{i}]"),
                    format!("token id {v} is not an integer from 0 to {}", u32::MAX),
                )
            })
        })
        .collect()
}

pub(crate) fn stop_list(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    match present(v) {
        None => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let limit = zeta_proto::edge::MAX_STOP_STRINGS;
            if items.len() > limit {
                return Err(ApiError::invalid(
                    "stop",
                    format!("'stop' may hold at most {limit} strings, got {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str().filter(|s| !s.is_empty()).map(String::from).ok_or_else(|| {
                        ApiError::invalid(format!("stop[{i}]"), "each stop sequence must be a non-empty string")
                    })
                })
                .collect()
        }
        Some(other) => Err(ApiError::invalid(
            "stop",
            format!("'stop' must be a string or an array of strings, got {}", type_name(other)),
        )),
    }
}

fn logit_bias(v: &Option<Value>) -> Result<std::collections::HashMap<u32, f32>, ApiError> {
    let Some(v) = present(v) else { return Ok(Default::default()) };
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("logit_bias", "'logit_bias' must be an object of token id to bias"))?;
    obj.iter()
        .map(|(k, b)| {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::invalid("logit_bias", format!("'{}' is not a token id", zeta_proto::edge::quote(k)))
            })?;
            let bias = number(&Some(b.clone()), "logit_bias", -100.0, 100.0)?.unwrap_or(0.0);
            Ok((id, bias))
        })
        .collect()
}

fn n(v: &Option<Value>) -> Result<(), ApiError> {
    match integer(v, "n", 1, 128)? {
        None | Some(1) => Ok(()),
        Some(k) => Err(ApiError::unsupported("n", format!("only n=1 is supported, got n={k}"))),
    }
}

fn sampling(c: &SamplingFields) -> Result<v1::SamplingParams, ApiError> {
    let top_p = number(&c.top_p, "top_p", 0.0, 1.0)?;
    if top_p == Some(0.0) {
        return Err(ApiError::invalid("top_p", "'top_p' must be greater than 0"));
    }
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
    const MEDIA: [&str; 6] = ["image_url", "input_image", "input_audio", "file", "image", "document"];
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let part = format!("{field}[{j}]");
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    kind if kinds.contains(&kind) => out.push(
                        p.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                ApiError::invalid(format!("{part}.text"), "a text part needs a string 'text'")
                            })?
                            .to_string(),
                    ),
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
    let content = match obj.get("content").filter(|c| !c.is_null()) {
        Some(c) => Some(text_parts(c, &field("content"), TEXT)?),
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
    let tool_call_id = obj.get("tool_call_id").and_then(Value::as_str).unwrap_or_default().to_string();
    zeta_proto::edge::check_message(role, content.is_some(), !tool_calls.is_empty(), &tool_call_id)
        .map_err(|(f, why)| ApiError::invalid(field(f), why))?;
    Ok(v1::Message {
        role: role.to_string(),
        content,
        name: obj.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
        tool_calls,
        tool_call_id,
        reasoning_content: obj.get("reasoning_content").and_then(Value::as_str).map(String::from),
    })
}

pub(crate) fn valid_function_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// A tool's result sent back (Messages' `tool_result` block, Responses' `function_call_output`
/// item) as a tool message: `id` names the call it answers (`id_field` when missing), `content`
/// is its text (`content_field`, parts of `kinds`).
pub(crate) fn tool_result(
    id: Option<&str>,
    id_field: String,
    content: Option<&Value>,
    content_field: String,
    kinds: &[&str],
) -> Result<v1::Message, ApiError> {
    let id = id.unwrap_or("");
    if id.is_empty() {
        return Err(ApiError::invalid(id_field, "a tool result names the call it answers"));
    }
    let content = match content {
        None | Some(Value::Null) => String::new(),
        Some(c) => text_parts(c, &content_field, kinds)?,
    };
    Ok(v1::Message { role: "tool".into(), content: Some(content), tool_call_id: id.into(), ..Default::default() })
}

/// An optional array field (absent or null: empty).
pub(crate) fn array<'a>(v: &'a Option<Value>, name: &str) -> Result<&'a [Value], ApiError> {
    match present(v) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ApiError::invalid(name, format!("'{name}' must be an array, got {}", type_name(other)))),
    }
}

/// One function tool as every API declares it: its name, description and parameter schema
/// (absent: no parameters), each found under `field` for errors.
pub(crate) fn function_tool(
    f: &serde_json::Map<String, Value>,
    field: &str,
    schema_key: &str,
) -> Result<v1::Tool, ApiError> {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    if !valid_function_name(name) {
        return Err(ApiError::invalid(
            format!("{field}.name"),
            format!("'{}' must be 1-64 letters, digits, '_', '-' or '.'", zeta_proto::edge::quote(name)),
        ));
    }
    let parameters = match f.get(schema_key) {
        None | Some(Value::Null) => String::new(),
        Some(p @ Value::Object(_)) => p.to_string(),
        Some(_) => return Err(ApiError::invalid(format!("{field}.{schema_key}"), "must be a JSON Schema object")),
    };
    if let Some(d) = f.get("description").filter(|d| !d.is_null() && !d.is_string()) {
        return Err(ApiError::invalid(
            format!("{field}.description"),
            format!("must be a string, got {}", type_name(d)),
        ));
    }
    let strict = boolean(&f.get("strict").cloned(), &format!("{field}.strict"))?.unwrap_or(false);
    Ok(v1::Tool {
        name: name.into(),
        description: f.get("description").and_then(Value::as_str).unwrap_or_default().into(),
        parameters_json: parameters,
        strict,
    })
}

fn tools(v: &Option<Value>) -> Result<Vec<v1::Tool>, ApiError> {
    array(v, "tools")?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::unsupported(
                    format!("tools[{i}].type"),
                    "only tools of type 'function' are supported",
                ));
            }
            let f = t
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| ApiError::invalid(format!("tools[{i}].function"), "must be an object"))?;
            function_tool(f, &format!("tools[{i}].function"), "parameters")
        })
        .collect()
}

/// A tool choice naming `name`, which must be one of `tools`.
pub(crate) fn named_choice(name: &str, tools: &[v1::Tool], field: &str) -> Result<v1::ToolChoice, ApiError> {
    if !tools.iter().any(|t| t.name == name) {
        return Err(ApiError::invalid(
            field,
            format!("'{}' is not one of the given tools", zeta_proto::edge::quote(name)),
        ));
    }
    Ok(v1::ToolChoice { mode: v1::tool_choice::Mode::Required as i32, function: name.into() })
}

fn tool_choice(v: &Option<Value>, tools: &[v1::Tool]) -> Result<Option<v1::ToolChoice>, ApiError> {
    use v1::tool_choice::Mode;
    let Some(v) = present(v) else { return Ok(None) };
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "auto" => v1::ToolChoice { mode: Mode::Auto as i32, function: String::new() },
            "none" => v1::ToolChoice { mode: Mode::None as i32, function: String::new() },
            "required" => v1::ToolChoice { mode: Mode::Required as i32, function: String::new() },
            other => {
                return Err(ApiError::invalid("tool_choice", format!("'{other}' is not one of none, auto, required")));
            }
        },
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    "tool_choice",
                    "a named tool choice is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )
            })?;
            named_choice(name, tools, "tool_choice")?
        }
        other => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("must be a string or an object, got {}", type_name(other)),
            ));
        }
    };
    if tools.is_empty() && choice.mode != Mode::None as i32 && choice.mode != Mode::Auto as i32 {
        return Err(ApiError::invalid("tool_choice", "'tool_choice' requires 'tools'"));
    }
    Ok(Some(choice))
}

fn sized(text: String, field: &str) -> Result<String, ApiError> {
    use zeta_proto::edge::MAX_CONSTRAINT_BYTES;
    if text.len() > MAX_CONSTRAINT_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("is {} bytes, above the limit of {MAX_CONSTRAINT_BYTES}", text.len()),
        ));
    }
    Ok(text)
}

/// A JSON-schema constraint from the object holding `schema` (chat's `response_format.json_schema`,
/// the Responses API's `text.format`).
pub(crate) fn json_schema(holder: &Value, field: &str) -> Result<v1::Constraint, ApiError> {
    use v1::constraint::Kind;
    let schema = match holder.get("schema") {
        Some(s @ (Value::Object(_) | Value::Bool(true))) => s,
        None | Some(Value::Null) => return Err(ApiError::invalid(format!("{field}.schema"), "is required")),
        Some(other) => {
            return Err(ApiError::invalid(
                format!("{field}.schema"),
                format!("must be a JSON Schema object, got {}", type_name(other)),
            ));
        }
    };
    if let Some(name) = holder.get("name").filter(|n| !n.is_null())
        && !name.as_str().is_some_and(valid_function_name)
    {
        return Err(ApiError::invalid(format!("{field}.name"), "must be 1-64 letters, digits, '_', '-' or '.'"));
    }
    boolean(&holder.get("strict").cloned(), &format!("{field}.strict"))?;
    Ok(v1::Constraint { kind: Some(Kind::JsonSchema(sized(schema.to_string(), &format!("{field}.schema"))?)) })
}

/// The output constraint of `response_format` (`text`, `json_object`, `json_schema`) and the
/// `grammar` extension; at most one of them constrains.
pub(crate) fn constraint(format: &Option<Value>, grammar: &Option<Value>) -> Result<Option<v1::Constraint>, ApiError> {
    use v1::constraint::Kind;
    let from_format = match present(format) {
        None => None,
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(v1::Constraint { kind: Some(Kind::JsonObject(true)) }),
            Some("json_schema") => {
                let holder = v.get("json_schema").filter(|h| h.is_object()).ok_or_else(|| {
                    ApiError::invalid("response_format.json_schema", "must be an object with a 'schema'")
                })?;
                Some(json_schema(holder, "response_format.json_schema")?)
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format.type",
                    format!("'{}' is not one of text, json_object, json_schema", zeta_proto::edge::quote(other)),
                ));
            }
            None => return Err(ApiError::invalid("response_format", "must be an object with a 'type'")),
        },
    };
    let from_grammar = match string(grammar, "grammar")? {
        None => None,
        Some(g) if g.trim().is_empty() => return Err(ApiError::invalid("grammar", "is empty")),
        Some(g) => Some(v1::Constraint { kind: Some(Kind::Grammar(sized(g.to_string(), "grammar")?)) }),
    };
    if from_format.is_some() && from_grammar.is_some() {
        return Err(ApiError::invalid("grammar", "give either 'grammar' or a JSON 'response_format', not both"));
    }
    Ok(from_format.or(from_grammar))
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
    // Explicit template variables win over what the reasoning effort implies.
    let mut kwargs = match reasoning_effort(req.reasoning_effort.as_ref(), "reasoning_effort")? {
        Some(e) => effort_kwargs(&e),
        None => serde_json::Map::new(),
    };
    match present(&req.chat_template_kwargs) {
        None => {}
        Some(Value::Object(o)) => kwargs.extend(o.clone()),
        Some(_) => return Err(ApiError::invalid("chat_template_kwargs", "must be an object")),
    }
    let kwargs = if kwargs.is_empty() { String::new() } else { Value::Object(kwargs).to_string() };
    let sampling = sampling(&req.sampling)?;
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat { messages, continue_final_message: false })),
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
    // The legacy API's default is 16 tokens.
    let max_tokens = integer(&req.max_tokens, "max_tokens", 1, u32::MAX as i64)?.unwrap_or(16);
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(input),
        sampling: Some(sampling),
        max_tokens: Some(max_tokens as u32),
        stop: stop_list(&req.stop)?,
        logprobs: logprobs.map(|n| n as u32),
        request_id: request_id.into(),
        constraint: constraint(&None, &req.grammar)?,
        ..Default::default()
    };
    Ok((out, CompletionOptions { stream, include_usage, logprobs: logprobs.is_some(), model }))
}

/// A token-counting request (`/v1/tokens/count`, `/v1/tokenize`): the same validation as chat
/// for messages, tools and tool choice, so the count is that of the prompt a chat would use.
pub fn tokenize(dto: &TokenizeRequest, return_tokens: bool) -> Result<v1::TokenizeRequest, ApiError> {
    let model = model(&dto.model)?;
    let text = dto.text.as_ref().or(dto.prompt.as_ref()).filter(|v| !v.is_null());
    let input = match (text, dto.messages.as_ref().filter(|v| !v.is_null())) {
        (Some(Value::String(t)), None) => v1::tokenize_request::Input::Text(t.clone()),
        (Some(_), None) => return Err(ApiError::invalid("text", "'text' must be a string")),
        (None, Some(Value::Array(a))) if !a.is_empty() => v1::tokenize_request::Input::Chat(v1::Chat {
            messages: a.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<_, _>>()?,
            continue_final_message: false,
        }),
        (None, Some(_)) => return Err(ApiError::invalid("messages", "'messages' must be a non-empty array")),
        (Some(_), Some(_)) => return Err(ApiError::invalid("messages", "send either 'text' or 'messages', not both")),
        (None, None) => return Err(ApiError::invalid("text", "'text' or 'messages' is required")),
    };
    let tools = tools(&dto.tools)?;
    let tool_choice = tool_choice(&dto.tool_choice, &tools)?;
    Ok(v1::TokenizeRequest {
        model,
        input: Some(input),
        add_special_tokens: boolean(&dto.add_special_tokens, "add_special_tokens")?.unwrap_or(true),
        tools,
        return_tokens,
        // A count ships no ids: a 16 MB text is millions of them.
        count_only: !return_tokens,
        tool_choice,
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
