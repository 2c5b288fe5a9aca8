//! OpenAI's Responses API shape: the request body of `POST /v1/responses`, its one conversion to
//! the daemon's `GenerateRequest` (the domain request every endpoint makes) and the response
//! object. Errors use OpenAI's envelope, as for chat completions. The route and its typed stream
//! events are `routes::responses`.
//!
//! Mapping: `instructions` becomes a system message and `input` (a string, or items) the
//! conversation: `message` items by role (`developer` is a system message), `function_call` items
//! the assistant's tool calls (consecutive ones join one assistant turn), `function_call_output`
//! items tool messages; `reasoning` items are the model's own past thinking and are dropped, as
//! chat templates drop it. `reasoning.effort` `none` asks the template not to think, any other
//! effort to think, at that effort (`convert::effort_kwargs`); `reasoning.summary` returns the model's thinking as a reasoning item's
//! summary text.
//!
//! The server keeps nothing: `store: true`, `previous_response_id`, `conversation` and
//! `item_reference` items are refused with a 400 that says to send the whole conversation.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use zeta_proto::v1;

use crate::convert::{
    answered_calls, array, boolean, distinct, effort_kwargs, function_tool, integer, json_schema, model, named_choice,
    number, present, reasoning_effort, string, text_parts, tool_result, type_name,
};
use crate::error::ApiError;

/// The part types a Responses message's content takes as text (a `refusal` part is an earlier
/// answer's, echoed back as OpenAI returned it).
const TEXT: &[&str] = &["input_text", "output_text", "text", "refusal"];

/// `POST /v1/responses`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct ResponsesRequest {
    pub model: Option<Value>,
    pub input: Option<Value>,
    pub instructions: Option<Value>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<Value>,
    pub text: Option<Value>,
    pub max_output_tokens: Option<Value>,
    pub temperature: Option<Value>,
    pub top_p: Option<Value>,
    pub reasoning: Option<Value>,
    pub stream: Option<Value>,
    pub store: Option<Value>,
    pub previous_response_id: Option<Value>,
    pub conversation: Option<Value>,
    pub background: Option<Value>,
    pub metadata: Option<Value>,
    pub user: Option<Value>,
    pub truncation: Option<Value>,
    // Known fields this server does not implement: refused when set (see `refuse_unsupported`).
    pub prompt: Option<Value>,
    pub include: Option<Value>,
    pub top_logprobs: Option<Value>,
    pub max_tool_calls: Option<Value>,
    // Chat completions fields a client moving to this API may still send: each has moved or has
    // no counterpart here, and is refused rather than silently dropped.
    pub max_tokens: Option<Value>,
    pub max_completion_tokens: Option<Value>,
    pub response_format: Option<Value>,
    pub messages: Option<Value>,
    pub stop: Option<Value>,
    pub n: Option<Value>,
    pub seed: Option<Value>,
    pub logprobs: Option<Value>,
    pub frequency_penalty: Option<Value>,
    pub presence_penalty: Option<Value>,
    pub logit_bias: Option<Value>,
    // This server's chat extensions, which the Responses route does not take either.
    pub grammar: Option<Value>,
    pub top_k: Option<Value>,
    pub min_p: Option<Value>,
    pub repetition_penalty: Option<Value>,
    pub chat_template_kwargs: Option<Value>,
}

/// What the endpoint keeps of a request to shape its answer: the request's own settings, which
/// a response object echoes.
#[derive(Clone, Debug, Default)]
pub struct ResponsesOptions {
    /// Stream the typed events.
    pub stream: bool,
    /// Return the model's thinking as a reasoning item.
    pub summary: bool,
    /// Only the first tool call is kept (`parallel_tool_calls: false`).
    pub single_tool_call: bool,
    /// The model name the client asked for.
    pub model: String,
    /// Seconds since the epoch when the request arrived.
    pub created_at: u64,
    /// The echoed settings (`instructions`, `tools`, `tool_choice`, `temperature`, ...).
    pub echo: Map<String, Value>,
}

fn refuse_state(req: &ResponsesRequest) -> Result<(), ApiError> {
    const WHY: &str = "this server keeps no responses or conversations: send the whole conversation in 'input'";
    if boolean(&req.store, "store")? == Some(true) {
        return Err(ApiError::unsupported("store", format!("'store: true' is not supported; {WHY}")));
    }
    for (v, name) in [(&req.previous_response_id, "previous_response_id"), (&req.conversation, "conversation")] {
        if present(v).is_some() {
            return Err(ApiError::unsupported(name, format!("'{name}' is not supported; {WHY}")));
        }
    }
    if boolean(&req.background, "background")? == Some(true) {
        return Err(ApiError::unsupported("background", "background responses are not supported"));
    }
    Ok(())
}

/// Known Responses fields whose effect this server cannot give: a client that sets one gets a
/// 400 naming it rather than an answer that silently lacks it.
fn refuse_unsupported(req: &ResponsesRequest) -> Result<(), ApiError> {
    if present(&req.prompt).is_some() {
        return Err(ApiError::unsupported("prompt", "stored prompt templates are not supported; send 'input'"));
    }
    // Stateless clients (Codex CLI, the Agents SDK with store: false) ask for encrypted reasoning
    // to send back next turn; reasoning items sent back are dropped here, so there is nothing to
    // carry and the ask is met by leaving it out. Any other extra output is not kept.
    for (i, item) in array(&req.include, "include")?.iter().enumerate() {
        if item.as_str() != Some("reasoning.encrypted_content") {
            return Err(ApiError::unsupported(
                format!("include[{i}]"),
                format!("{item} is not supported (only \"reasoning.encrypted_content\", which is accepted and empty)"),
            ));
        }
    }
    if integer(&req.top_logprobs, "top_logprobs", 0, 20)?.is_some_and(|n| n > 0) {
        return Err(ApiError::unsupported("top_logprobs", "log-probabilities are not supported on /v1/responses"));
    }
    if present(&req.max_tool_calls).is_some() {
        return Err(ApiError::unsupported("max_tool_calls", "'max_tool_calls' is not supported"));
    }
    let moved = [
        (&req.max_tokens, "max_tokens", "has moved to 'max_output_tokens'"),
        (&req.max_completion_tokens, "max_completion_tokens", "has moved to 'max_output_tokens'"),
        (&req.response_format, "response_format", "has moved to 'text.format'"),
        (&req.messages, "messages", "has moved to 'input'"),
    ];
    for (v, name, why) in moved {
        if present(v).is_some() {
            return Err(ApiError::unsupported(name, format!("in the Responses API '{name}' {why}")));
        }
    }
    let chat_only = [
        (&req.stop, "stop"),
        (&req.n, "n"),
        (&req.seed, "seed"),
        (&req.logprobs, "logprobs"),
        (&req.frequency_penalty, "frequency_penalty"),
        (&req.presence_penalty, "presence_penalty"),
        (&req.logit_bias, "logit_bias"),
        (&req.grammar, "grammar"),
        (&req.top_k, "top_k"),
        (&req.min_p, "min_p"),
        (&req.repetition_penalty, "repetition_penalty"),
        (&req.chat_template_kwargs, "chat_template_kwargs"),
    ];
    for (v, name) in chat_only {
        if present(v).is_some() {
            return Err(ApiError::unsupported(
                name,
                format!("'{name}' is not a Responses API parameter (it is one of /v1/chat/completions)"),
            ));
        }
    }
    Ok(())
}

/// One input item, appended to `out` as wire messages.
fn item(i: usize, it: &Value, out: &mut Vec<v1::Message>, results: &mut Vec<(usize, String)>) -> Result<(), ApiError> {
    let field = format!("input[{i}]");
    let obj = it.as_object().ok_or_else(|| ApiError::invalid(&field, "each input item must be an object"))?;
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str);
    let kind = str_of("type").unwrap_or(if obj.contains_key("role") { "message" } else { "" });
    match kind {
        "message" => {
            let role = match str_of("role").unwrap_or("") {
                "developer" | "system" => "system",
                r @ ("user" | "assistant") => r,
                other => {
                    return Err(ApiError::invalid(
                        format!("{field}.role"),
                        format!(
                            "must be one of user, assistant, system, developer, got '{}'",
                            zeta_proto::edge::quote(other)
                        ),
                    ));
                }
            };
            let content =
                obj.get("content").ok_or_else(|| ApiError::invalid(format!("{field}.content"), "is required"))?;
            let text = text_parts(content, &format!("{field}.content"), TEXT)?;
            out.push(v1::Message { role: role.into(), content: Some(text), ..Default::default() });
        }
        "function_call" => {
            let call_id = str_of("call_id").unwrap_or("");
            let name = str_of("name").unwrap_or("");
            if call_id.is_empty() || name.is_empty() {
                return Err(ApiError::invalid(&field, "a function_call item needs 'call_id' and 'name'"));
            }
            let arguments = str_of("arguments")
                .ok_or_else(|| ApiError::invalid(format!("{field}.arguments"), "must be a string of JSON"))?;
            let call = v1::ToolCall { id: call_id.into(), name: name.into(), arguments: arguments.into() };
            // Parallel calls arrive as consecutive items: they are one assistant turn.
            match out.last_mut() {
                Some(m) if m.role == "assistant" => m.tool_calls.push(call),
                _ => out.push(v1::Message { role: "assistant".into(), tool_calls: vec![call], ..Default::default() }),
            }
        }
        "function_call_output" => {
            out.push(tool_result(
                str_of("call_id"),
                format!("{field}.call_id"),
                obj.get("output"),
                format!("{field}.output"),
                TEXT,
            )?);
            results.push((out.len() - 1, format!("{field}.call_id")));
        }
        "reasoning" => {}
        "item_reference" => {
            return Err(ApiError::unsupported(
                format!("{field}.type"),
                "item references are not supported: this server keeps no responses; send the item itself",
            ));
        }
        "" => return Err(ApiError::invalid(format!("{field}.type"), "each input item needs a 'type'")),
        other => {
            return Err(ApiError::unsupported(
                format!("{field}.type"),
                format!(
                    "input items of type '{}' are not supported (supported: message, function_call, function_call_output, reasoning)",
                    zeta_proto::edge::quote(other)
                ),
            ));
        }
    }
    Ok(())
}

fn tools(v: &Option<Value>) -> Result<Vec<v1::Tool>, ApiError> {
    array(v, "tools")?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let t = t.as_object().ok_or_else(|| ApiError::invalid(format!("tools[{i}]"), "must be an object"))?;
            match t.get("type").and_then(Value::as_str) {
                Some("function") => function_tool(t, &format!("tools[{i}]"), "parameters"),
                other => Err(ApiError::unsupported(
                    format!("tools[{i}].type"),
                    format!(
                        "tools of type '{}' are not supported; only 'function'",
                        zeta_proto::edge::quote(other.unwrap_or(""))
                    ),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|t| distinct(t, |i| format!("tools[{i}].name")))
}

fn tool_choice(v: &Option<Value>, tools: &[v1::Tool]) -> Result<Option<v1::ToolChoice>, ApiError> {
    use v1::tool_choice::Mode;
    let Some(v) = present(v) else { return Ok(None) };
    let mode = |m: Mode| v1::ToolChoice { mode: m as i32, function: String::new() };
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "auto" => mode(Mode::Auto),
            "none" => mode(Mode::None),
            "required" => mode(Mode::Required),
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("'{}' is not one of none, auto, required", zeta_proto::edge::quote(other)),
                ));
            }
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            named_choice(o.get("name").and_then(Value::as_str).unwrap_or(""), tools, "tool_choice.name")?
        }
        Value::Object(_) => {
            return Err(ApiError::unsupported(
                "tool_choice.type",
                "only 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...} are supported",
            ));
        }
        other => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("must be a string or an object, got {}", type_name(other)),
            ));
        }
    };
    if tools.is_empty() && choice.mode == Mode::Required as i32 {
        return Err(ApiError::invalid("tool_choice", "'tool_choice' requires 'tools'"));
    }
    Ok(Some(choice))
}

/// `text.format`: what the response echoes, and the output constraint.
fn text_format(v: &Option<Value>) -> Result<(Value, Option<v1::Constraint>), ApiError> {
    let format = present(v).and_then(|t| t.get("format")).filter(|f| !f.is_null());
    match (format, format.map(|f| f.get("type").and_then(Value::as_str))) {
        (None, _) | (_, Some(Some("text"))) => Ok((json!({"type": "text"}), None)),
        (Some(f), Some(Some("json_object"))) => {
            Ok((f.clone(), Some(v1::Constraint { kind: Some(v1::constraint::Kind::JsonObject(true)) })))
        }
        (Some(f), Some(Some("json_schema"))) => Ok((f.clone(), Some(json_schema(f, "text.format")?))),
        _ => Err(ApiError::invalid("text.format.type", "must be one of text, json_object, json_schema")),
    }
}

/// What `reasoning` asks: its effort (None: the template's default) and whether to return a
/// summary.
fn reasoning(v: &Option<Value>) -> Result<(Option<String>, bool), ApiError> {
    let Some(r) = present(v) else { return Ok((None, false)) };
    let r = r.as_object().ok_or_else(|| ApiError::invalid("reasoning", "must be an object"))?;
    let think = reasoning_effort(r.get("effort"), "reasoning.effort")?;
    let summary = match r.get("summary").or_else(|| r.get("generate_summary")).filter(|s| !s.is_null()) {
        None => false,
        Some(Value::String(s)) if ["auto", "concise", "detailed"].contains(&s.as_str()) => true,
        Some(_) => return Err(ApiError::invalid("reasoning.summary", "must be one of auto, concise, detailed")),
    };
    Ok((think, summary))
}

/// A Responses request as the daemon's `GenerateRequest`.
pub fn convert(req: &ResponsesRequest, request_id: &str) -> Result<(v1::GenerateRequest, ResponsesOptions), ApiError> {
    refuse_state(req)?;
    refuse_unsupported(req)?;
    let model = model(&req.model)?;
    let mut messages = Vec::new();
    let instructions = string(&req.instructions, "instructions")?;
    if let Some(s) = instructions {
        messages.push(v1::Message { role: "system".into(), content: Some(s.into()), ..Default::default() });
    }
    let mut results = Vec::new();
    match present(&req.input) {
        None => return Err(ApiError::invalid("input", "'input' is required")),
        Some(Value::String(s)) => {
            messages.push(v1::Message { role: "user".into(), content: Some(s.clone()), ..Default::default() })
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            for (i, it) in a.iter().enumerate() {
                item(i, it, &mut messages, &mut results)?;
            }
        }
        Some(Value::Array(_)) => return Err(ApiError::invalid("input", "'input' must not be empty")),
        Some(other) => {
            return Err(ApiError::invalid(
                "input",
                format!("'input' must be a string or an array of items, got {}", type_name(other)),
            ));
        }
    }
    if !messages.iter().any(|m| m.role != "system") {
        return Err(ApiError::invalid("input", "'input' has no user, assistant or tool turn"));
    }
    answered_calls(&messages, &results)?;
    let tools = tools(&req.tools)?;
    let choice = tool_choice(&req.tool_choice, &tools)?;
    let parallel = boolean(&req.parallel_tool_calls, "parallel_tool_calls")?.unwrap_or(true);
    let (format, constraint) = text_format(&req.text)?;
    let (think, summary) = reasoning(&req.reasoning)?;
    let max_tokens = integer(&req.max_output_tokens, "max_output_tokens", 1, u32::MAX as i64)?;
    let stream = boolean(&req.stream, "stream")?.unwrap_or(false);
    let temperature = number(&req.temperature, "temperature", 0.0, 2.0)?;
    let top_p = crate::convert::top_p(&req.top_p, "top_p")?;
    let _ = string(&req.user, "user")?;
    // 'auto': the daemon drops the oldest turns of a conversation too long for the context.
    let truncate = match present(&req.truncation).map(|t| t.as_str()) {
        None | Some(Some("disabled")) => false,
        Some(Some("auto")) => true,
        Some(_) => return Err(ApiError::invalid("truncation", "must be 'auto' or 'disabled'")),
    };
    let metadata = match present(&req.metadata) {
        None => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(other) => {
            return Err(ApiError::invalid("metadata", format!("must be an object, got {}", type_name(other))));
        }
    };
    let kwargs = match think {
        Some(effort) => Value::Object(effort_kwargs(&effort)).to_string(),
        None => String::new(),
    };
    let mut echo = Map::new();
    echo.insert("instructions".into(), instructions.map_or(Value::Null, Value::from));
    echo.insert("max_output_tokens".into(), max_tokens.map_or(Value::Null, Value::from));
    // As sent (the f32 the daemon gets would come back as 0.30000001); null when not sent, as
    // the model's configured defaults (unknown here) apply then, not OpenAI's 1.0.
    echo.insert("temperature".into(), present(&req.temperature).cloned().unwrap_or(Value::Null));
    echo.insert("top_p".into(), present(&req.top_p).cloned().unwrap_or(Value::Null));
    echo.insert("parallel_tool_calls".into(), json!(parallel));
    echo.insert("tool_choice".into(), present(&req.tool_choice).cloned().unwrap_or_else(|| json!("auto")));
    echo.insert("tools".into(), present(&req.tools).cloned().unwrap_or_else(|| json!([])));
    echo.insert("text".into(), json!({"format": format}));
    echo.insert(
        "reasoning".into(),
        present(&req.reasoning).cloned().unwrap_or_else(|| json!({"effort": null, "summary": null})),
    );
    echo.insert("metadata".into(), metadata);
    echo.insert("user".into(), present(&req.user).cloned().unwrap_or(Value::Null));
    echo.insert("truncation".into(), json!(if truncate { "auto" } else { "disabled" }));
    let out = v1::GenerateRequest {
        model: model.clone(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat { messages, continue_final_message: false })),
        sampling: Some(v1::SamplingParams { temperature, top_p, ..Default::default() }),
        max_tokens: max_tokens.map(|m| m as u32),
        request_id: request_id.into(),
        tools,
        tool_choice: choice,
        separate_reasoning: true,
        chat_template_kwargs_json: kwargs,
        constraint,
        truncate_oldest_turns: truncate,
        ..Default::default()
    };
    let options = ResponsesOptions {
        stream,
        summary,
        single_tool_call: !parallel,
        model,
        created_at: crate::routes::now(),
        echo,
    };
    Ok((out, options))
}

/// A response object: the echoed settings, its status, output items and usage.
pub fn response_object(
    id: &str,
    opts: &ResponsesOptions,
    model: &str,
    status: &str,
    output: Vec<Value>,
    finished: Option<&v1::Finished>,
) -> Value {
    let mut v = json!({
        "id": id,
        "object": "response",
        "created_at": opts.created_at,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "model": model,
        "output": output,
        "previous_response_id": null,
        "completed_at": null,
        "store": false,
        "truncation": "disabled",
        "usage": null,
    });
    let obj = v.as_object_mut().expect("a response is an object");
    for (k, x) in &opts.echo {
        obj.insert(k.clone(), x.clone());
    }
    if let Some(f) = finished {
        let u = f.usage.unwrap_or_default();
        obj.insert(
            "usage".into(),
            json!({
                "input_tokens": u.prompt_tokens,
                "input_tokens_details": {"cached_tokens": u.cached_tokens},
                "output_tokens": u.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.prompt_tokens + u.completion_tokens,
            }),
        );
        if v1::FinishReason::try_from(f.reason) == Ok(v1::FinishReason::Length) {
            obj.insert("status".into(), json!("incomplete"));
            obj.insert("incomplete_details".into(), json!({"reason": "max_output_tokens"}));
        } else {
            obj.insert("completed_at".into(), json!(crate::routes::now()));
        }
    }
    v
}

/// The status word of a finished response.
pub fn final_status(f: &v1::Finished) -> &'static str {
    if v1::FinishReason::try_from(f.reason) == Ok(v1::FinishReason::Length) { "incomplete" } else { "completed" }
}

/// A reasoning output item.
pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

/// An assistant message output item.
pub fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{"type": "output_text", "text": t, "annotations": [], "logprobs": []}]),
        None => json!([]),
    };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

/// A function call output item.
pub fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}
