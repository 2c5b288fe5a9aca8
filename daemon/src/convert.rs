//! Conversions between the wire types of `zeta.mlx.v1` and the engine's domain types. Requests are
//! validated here (fields named in every error); engine events and shaped output become stream
//! events here. Wire types never reach the engine, and engine types never reach the wire.

use zeta_engine::constraint::Constraint;
use zeta_engine::tools::{CallDelta, ForcedChoice, ShapedDelta, Shaping};
use zeta_engine::{ChatMessage, FinishReason, FunctionCall, GenerateRequest, Prompt, SamplingParams, ToolCall};
use zeta_proto::v1;

use crate::config::SamplingDefaults;
use crate::error::DaemonError;

/// Converts one chat message.
pub fn message(i: usize, m: &v1::Message) -> Result<ChatMessage, DaemonError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    zeta_proto::edge::check_message(&m.role, m.content.is_some(), !m.tool_calls.is_empty(), &m.tool_call_id)
        .map_err(|(f, why)| DaemonError::invalid(field(f), why))?;
    let role = if m.role == "developer" { "system".to_string() } else { m.role.clone() };
    let mut tool_calls = Vec::with_capacity(m.tool_calls.len());
    for c in &m.tool_calls {
        // Arguments that are not JSON (a call max_tokens cut short, as this daemon itself
        // returns it) stay the string they are: OpenAI takes any string here, and templates
        // write a string argument as it is.
        let arguments = if c.arguments.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&c.arguments).unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone()))
        };
        tool_calls.push(ToolCall {
            id: c.id.clone(),
            kind: "function".into(),
            function: FunctionCall { name: c.name.clone(), arguments },
        });
    }
    Ok(ChatMessage {
        role,
        content: m.content.clone(),
        name: (!m.name.is_empty()).then(|| m.name.clone()),
        tool_calls,
        tool_call_id: (!m.tool_call_id.is_empty()).then(|| m.tool_call_id.clone()),
        reasoning_content: m.reasoning_content.clone(),
    })
}

/// Every tool result must answer a call an earlier assistant message made (OpenAI's rule): a
/// result of no call is a conversation the model was never trained on, and usually a client bug.
fn answered_calls(messages: &[ChatMessage]) -> Result<(), DaemonError> {
    let mut calls = std::collections::HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        calls.extend(m.tool_calls.iter().map(|c| c.id.as_str()));
        if m.role == "tool"
            && let Some(id) = m.tool_call_id.as_deref()
            && !calls.contains(id)
        {
            return Err(DaemonError::invalid(
                format!("messages[{i}].tool_call_id"),
                format!("'{}' answers no tool call of an earlier assistant message", zeta_proto::edge::quote(id)),
            ));
        }
    }
    Ok(())
}

/// A tool as chat templates expect it (the OpenAI `tools[]` entry).
pub fn tool(i: usize, t: &v1::Tool) -> Result<serde_json::Value, DaemonError> {
    if t.name.is_empty() {
        return Err(DaemonError::invalid(format!("tools[{i}].function.name"), "is empty"));
    }
    let parameters: serde_json::Value = if t.parameters_json.trim().is_empty() {
        serde_json::json!({"type": "object", "properties": {}})
    } else {
        serde_json::from_str(&t.parameters_json).map_err(|e| {
            DaemonError::invalid(format!("tools[{i}].function.parameters"), format!("is not valid JSON: {e}"))
        })?
    };
    let mut function = serde_json::Map::new();
    function.insert("name".into(), t.name.clone().into());
    if !t.description.is_empty() {
        function.insert("description".into(), t.description.clone().into());
    }
    function.insert("parameters".into(), parameters);
    Ok(serde_json::json!({"type": "function", "function": function}))
}

/// A chat as the engine's prompt.
pub fn chat(chat: &v1::Chat, tools: &[v1::Tool], kwargs_json: &str) -> Result<Prompt, DaemonError> {
    if chat.messages.is_empty() {
        return Err(DaemonError::invalid("messages", "must hold at least one message"));
    }
    let messages = chat.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?;
    answered_calls(&messages)?;
    // A name declared twice leaves the model's call ambiguous (the gateway refuses it too).
    for (i, t) in tools.iter().enumerate() {
        if let Some(j) = tools[..i].iter().position(|u| u.name == t.name) {
            return Err(DaemonError::invalid(
                format!("tools[{i}].name"),
                format!("is declared twice (first as tools[{j}])"),
            ));
        }
    }
    let tools = if tools.is_empty() {
        None
    } else {
        Some(tools.iter().enumerate().map(|(i, t)| tool(i, t)).collect::<Result<Vec<_>, _>>()?)
    };
    let extra = match kwargs_json.trim() {
        "" => None,
        s => match serde_json::from_str(s) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => return Err(DaemonError::invalid("chat_template_kwargs", "must be a JSON object")),
        },
    };
    // The variables the server gives every template come from the request itself: a kwarg of
    // the same name would be silently overridden.
    let reserved = zeta_engine::ChatTemplate::SERVER_VARIABLES;
    if let Some(k) = extra.as_ref().and_then(|m| reserved.iter().find(|k| m.contains_key(**k))) {
        return Err(DaemonError::invalid(
            format!("chat_template_kwargs.{k}"),
            "is set by the server from the request (messages, tools, continue_final_message) and the model",
        ));
    }
    if chat.continue_final_message {
        zeta_engine::check_continuation(&messages, false)?;
    }
    Ok(Prompt::Chat {
        messages,
        tools,
        add_generation_prompt: !chat.continue_final_message,
        continue_final_message: chat.continue_final_message,
        extra,
    })
}

/// The request's sampling, over the model's configured defaults, over the engine's.
pub fn sampling(s: Option<&v1::SamplingParams>, d: &SamplingDefaults, logprobs: Option<u32>) -> SamplingParams {
    let base = SamplingParams::default();
    let s = s.cloned().unwrap_or_default();
    SamplingParams {
        temperature: s.temperature.or(d.temperature).unwrap_or(base.temperature),
        top_p: s.top_p.or(d.top_p).unwrap_or(base.top_p),
        top_k: s.top_k.or(d.top_k).unwrap_or(base.top_k),
        min_p: s.min_p.or(d.min_p).unwrap_or(base.min_p),
        repetition_penalty: s.repetition_penalty.or(d.repetition_penalty).unwrap_or(base.repetition_penalty),
        presence_penalty: s.presence_penalty.unwrap_or(0.0),
        frequency_penalty: s.frequency_penalty.unwrap_or(0.0),
        logit_bias: {
            let mut b: Vec<(u32, f32)> = s.logit_bias.into_iter().collect();
            b.sort_by_key(|x| x.0);
            b
        },
        seed: s.seed,
        logprobs,
    }
}

/// A `GenerateRequest` as the engine's request; its output's shape is [`shaping`]'s.
pub fn generate(
    req: &v1::GenerateRequest,
    defaults: &SamplingDefaults,
    request_id: &str,
) -> Result<GenerateRequest, DaemonError> {
    use v1::generate_request::Input;
    tool_choice(&req.tools, req.tool_choice.as_ref())?;
    let tools: &[v1::Tool] = if hides_tools(req.tool_choice.as_ref()) { &[] } else { &req.tools };
    // What only a chat can use is refused with a raw prompt, not silently dropped.
    if !matches!(req.input, Some(Input::Chat(_)) | None) {
        let chat_only = [
            ("tools", !req.tools.is_empty(), "only apply to chat requests"),
            ("truncate_oldest_turns", req.truncate_oldest_turns, "only applies to chat requests"),
            ("chat_template_kwargs", !req.chat_template_kwargs_json.trim().is_empty(), "only applies to chat requests"),
        ];
        if let Some((field, _, why)) = chat_only.into_iter().find(|c| c.1) {
            return Err(DaemonError::invalid(field, why));
        }
    }
    let prompt = match &req.input {
        Some(Input::Chat(c)) => chat(c, tools, &req.chat_template_kwargs_json)?,
        Some(Input::Prompt(p)) => Prompt::Text(p.clone()),
        Some(Input::PromptTokens(t)) => Prompt::Tokens(t.ids.clone()),
        None => return Err(DaemonError::invalid("input", "set one of chat, prompt or prompt_tokens")),
    };
    Ok(GenerateRequest {
        request_id: request_id.to_string(),
        prompt,
        sampling: sampling(req.sampling.as_ref(), defaults, req.logprobs),
        max_tokens: req.max_tokens.map(|m| m as usize),
        max_tokens_cap: max_tokens_cap(req, defaults),
        stop: req.stop.clone(),
        keep_special_tokens: false,
        constraint: constraint(req.constraint.as_ref())?,
    })
}

/// A request [`generate`] converted with no model's defaults (to check it before the model is
/// acquired), given the defaults of the model that serves it.
pub fn with_defaults(
    mut out: GenerateRequest,
    req: &v1::GenerateRequest,
    defaults: &SamplingDefaults,
) -> GenerateRequest {
    out.sampling = sampling(req.sampling.as_ref(), defaults, req.logprobs);
    out.max_tokens_cap = max_tokens_cap(req, defaults);
    out
}

/// A model's default (or the caller's cap) never makes a request fail: it only shortens an answer.
fn max_tokens_cap(req: &v1::GenerateRequest, defaults: &SamplingDefaults) -> Option<usize> {
    [defaults.max_tokens, req.max_tokens_cap.map(|c| c as usize)].into_iter().flatten().min()
}

/// The checks of a request's grammars that need no model (see
/// [`zeta_engine::constraint::precheck`]): its constraint, and the schemas of the tools whose
/// calls are held to them — a forced call's, and strict tools' unless the tools are hidden.
pub fn precheck_grammars(req: &v1::GenerateRequest, converted: &GenerateRequest) -> Result<(), DaemonError> {
    if let Some(c) = &converted.constraint {
        zeta_engine::constraint::precheck(c)?;
    }
    let choice = req.tool_choice.as_ref();
    let forced = |t: &v1::Tool| match choice {
        Some(c) if !c.function.is_empty() => c.function == t.name,
        Some(c) => c.mode == v1::tool_choice::Mode::Required as i32,
        None => false,
    };
    let held: Vec<Option<serde_json::Value>> = req
        .tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if !(forced(t) || (t.strict && !hides_tools(choice))) {
                return Ok(None);
            }
            tool(i, t).map(|v| Some(v["function"]["parameters"].clone()))
        })
        .collect::<Result<_, _>>()?;
    if held.iter().any(Option::is_some) {
        zeta_engine::constraint::precheck_tools(&held)?;
    }
    Ok(())
}

/// A tool choice must be one of the modes and name one of the tools: a call forced to a tool
/// the request does not declare could never be made as the caller means it.
pub fn tool_choice(tools: &[v1::Tool], choice: Option<&v1::ToolChoice>) -> Result<(), DaemonError> {
    let Some(c) = choice else { return Ok(()) };
    if v1::tool_choice::Mode::try_from(c.mode).is_err() {
        return Err(DaemonError::invalid(
            "tool_choice.mode",
            format!("{} is not a mode (0 unspecified, 1 auto, 2 none, 3 required)", c.mode),
        ));
    }
    if !c.function.is_empty() && !tools.iter().any(|t| t.name == c.function) {
        return Err(DaemonError::invalid(
            "tool_choice.function",
            format!("'{}' is not one of the tools", zeta_proto::edge::quote(&c.function)),
        ));
    }
    Ok(())
}

/// The request's output constraint as the engine's.
pub fn constraint(c: Option<&v1::Constraint>) -> Result<Option<Constraint>, DaemonError> {
    use v1::constraint::Kind;
    use zeta_proto::edge::MAX_CONSTRAINT_BYTES;
    let (field, len) = match c.and_then(|c| c.kind.as_ref()) {
        Some(Kind::JsonSchema(s)) => ("constraint.json_schema", s.len()),
        Some(Kind::Grammar(g)) => ("constraint.grammar", g.len()),
        _ => ("", 0),
    };
    if len > MAX_CONSTRAINT_BYTES {
        return Err(DaemonError::invalid(field, format!("is {len} bytes, above the limit of {MAX_CONSTRAINT_BYTES}")));
    }
    Ok(match c.and_then(|c| c.kind.as_ref()) {
        None | Some(Kind::JsonObject(false)) => None,
        Some(Kind::JsonObject(true)) => Some(Constraint::JsonObject),
        Some(Kind::JsonSchema(s)) => match serde_json::from_str(s) {
            Ok(v) => Some(Constraint::JsonSchema(v)),
            Err(e) => return Err(DaemonError::invalid("constraint.json_schema", format!("is not JSON: {e}"))),
        },
        Some(Kind::Grammar(g)) if g.trim().is_empty() => {
            return Err(DaemonError::invalid("constraint.grammar", "is empty"));
        }
        Some(Kind::Grammar(g)) => Some(Constraint::Lark(g.clone())),
    })
}

/// What a request asks of its output's shape: the forced call, reasoning, and the tools whose
/// arguments are generated under their schema even when the call is not forced.
pub fn shaping(tools: &[v1::Tool], tool_choice: Option<&v1::ToolChoice>, separate_reasoning: bool) -> Shaping {
    let forced = match tool_choice.map(|c| (c.mode, c.function.as_str())) {
        Some((_, f)) if !f.is_empty() => Some(ForcedChoice::Function(f.to_string())),
        Some((m, _)) if m == v1::tool_choice::Mode::Required as i32 => Some(ForcedChoice::Required),
        _ => None,
    };
    let strict = if hides_tools(tool_choice) {
        vec![]
    } else {
        tools.iter().filter(|t| t.strict).map(|t| t.name.clone()).collect()
    };
    Shaping { forced, separate_reasoning, strict }
}

/// Whether a tool choice hides the tools from the prompt (`none`).
pub fn hides_tools(tool_choice: Option<&v1::ToolChoice>) -> bool {
    tool_choice.is_some_and(|c| c.mode == v1::tool_choice::Mode::None as i32 && c.function.is_empty())
}

fn call_delta(c: CallDelta) -> v1::ToolCallDelta {
    v1::ToolCallDelta { index: c.index as u32, id: c.id, name: c.name, arguments: c.arguments }
}

/// A shaped piece of output, with the tokens it came from, as the wire's delta.
pub fn delta(d: ShapedDelta, tokens: Vec<u32>, logprobs: &[zeta_engine::TokenLogprob]) -> v1::GenerateEvent {
    let delta = v1::Delta {
        text: d.text,
        reasoning_text: d.reasoning,
        tool_calls: d.calls.into_iter().map(call_delta).collect(),
        token_ids: tokens,
        logprobs: self::logprobs(logprobs),
    };
    v1::GenerateEvent { event: Some(v1::generate_event::Event::Delta(delta)) }
}

/// The start of a generation as the wire's event.
pub fn started(request_id: &str, model: &str, prompt_tokens: usize, cached_tokens: usize) -> v1::GenerateEvent {
    v1::GenerateEvent {
        event: Some(v1::generate_event::Event::Started(v1::Started {
            request_id: request_id.to_string(),
            model: model.to_string(),
            prompt_tokens: prompt_tokens as u32,
            cached_tokens: cached_tokens as u32,
        })),
    }
}

/// How a generation ended, as the engine and the tool-call shaper saw it.
#[derive(Debug)]
pub struct End {
    /// The engine's reason.
    pub reason: FinishReason,
    /// The stop string that ended it, when one did.
    pub stop: Option<String>,
    /// Whether the answer called tools (a stop after tool calls is `TOOL_CALLS`).
    pub called_tools: bool,
    /// Generated tokens spent reasoning.
    pub reasoning_tokens: usize,
}

/// The end of a generation as the wire's event.
pub fn finished(end: End, usage: &zeta_engine::Usage, timings: &zeta_engine::Timings) -> v1::GenerateEvent {
    let reason = match end.reason {
        FinishReason::Stop if end.called_tools => v1::FinishReason::ToolCalls,
        FinishReason::Stop => v1::FinishReason::Stop,
        FinishReason::Length => v1::FinishReason::Length,
    };
    v1::GenerateEvent {
        event: Some(v1::generate_event::Event::Finished(v1::Finished {
            reason: reason as i32,
            stop_sequence: end.stop.unwrap_or_default(),
            usage: Some(v1::Usage {
                prompt_tokens: usage.prompt_tokens as u32,
                completion_tokens: usage.completion_tokens as u32,
                cached_tokens: usage.cached_tokens as u32,
                reasoning_tokens: end.reasoning_tokens as u32,
            }),
            timings: Some(v1::Timings {
                queued_seconds: timings.queued.as_secs_f64(),
                prefill_seconds: timings.prefill.as_secs_f64(),
                decode_seconds: timings.decode.as_secs_f64(),
            }),
        })),
    }
}

/// Engine log-probabilities as wire ones.
pub fn logprobs(l: &[zeta_engine::TokenLogprob]) -> Vec<v1::TokenLogprob> {
    l.iter()
        .map(|t| v1::TokenLogprob {
            token_id: t.token,
            token: t.text.clone(),
            logprob: t.logprob,
            top: t
                .top
                .iter()
                .map(|a| v1::TopLogprob {
                    token_id: a.token,
                    token: a.text.clone(),
                    logprob: a.logprob,
                    bytes: a.bytes.clone(),
                })
                .collect(),
            bytes: t.bytes.clone(),
        })
        .collect()
}

/// An engine histogram as a wire one.
pub fn histogram(h: &zeta_engine::metrics::HistogramSnapshot) -> v1::Histogram {
    v1::Histogram {
        bounds: h.buckets.iter().map(|b| b.0).collect(),
        counts: h.buckets.iter().map(|b| b.1).collect(),
        count: h.count,
        sum: h.sum,
    }
}
