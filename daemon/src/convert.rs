//! Conversions between the wire types of `zeta.mlx.v1` and the engine's domain types. Requests are
//! validated here (fields named in every error); engine events become stream events here. Wire
//! types never reach the engine, and engine types never reach the wire.

use zeta_engine::{ChatMessage, FunctionCall, GenerateRequest, Prompt, SamplingParams, ToolCall};
use zeta_proto::v1;

use crate::config::SamplingDefaults;
use crate::error::DaemonError;

/// Roles a message may have. `developer` (OpenAI's newer name) is given to templates as `system`.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Converts one chat message.
pub fn message(i: usize, m: &v1::Message) -> Result<ChatMessage, DaemonError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    if !ROLES.contains(&m.role.as_str()) {
        return Err(DaemonError::invalid(field("role"), format!("'{}' is not one of {}", m.role, ROLES.join(", "))));
    }
    let role = if m.role == "developer" { "system".to_string() } else { m.role.clone() };
    let mut tool_calls = Vec::with_capacity(m.tool_calls.len());
    for (j, c) in m.tool_calls.iter().enumerate() {
        if m.role != "assistant" {
            return Err(DaemonError::invalid(field("tool_calls"), "only assistant messages carry tool calls"));
        }
        let arguments = if c.arguments.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&c.arguments).map_err(|e| {
                DaemonError::invalid(
                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    format!("is not valid JSON: {e}"),
                )
            })?
        };
        tool_calls.push(ToolCall {
            id: c.id.clone(),
            kind: "function".into(),
            function: FunctionCall { name: c.name.clone(), arguments },
        });
    }
    if m.content.is_none() && tool_calls.is_empty() && m.role != "assistant" {
        return Err(DaemonError::invalid(field("content"), "is missing"));
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
    Ok(Prompt::Chat { messages, tools, add_generation_prompt: !chat.continue_final_message, extra })
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

/// A `GenerateRequest` as the engine's request (tools and tool choice are handled by the caller).
pub fn generate(
    req: &v1::GenerateRequest,
    defaults: &SamplingDefaults,
    request_id: &str,
) -> Result<GenerateRequest, DaemonError> {
    use v1::generate_request::Input;
    let hide_tools =
        req.tool_choice.as_ref().is_some_and(|c| c.mode == v1::tool_choice::Mode::None as i32 && c.function.is_empty());
    let tools: &[v1::Tool] = if hide_tools { &[] } else { &req.tools };
    let prompt = match &req.input {
        Some(Input::Chat(c)) => chat(c, tools, &req.chat_template_kwargs_json)?,
        Some(Input::Prompt(p)) => {
            if !req.tools.is_empty() {
                return Err(DaemonError::invalid("tools", "only apply to chat requests"));
            }
            Prompt::Text(p.clone())
        }
        Some(Input::PromptTokens(t)) => Prompt::Tokens(t.ids.clone()),
        None => return Err(DaemonError::invalid("input", "set one of chat, prompt or prompt_tokens")),
    };
    Ok(GenerateRequest {
        request_id: request_id.to_string(),
        prompt,
        sampling: sampling(req.sampling.as_ref(), defaults, req.logprobs),
        max_tokens: req.max_tokens.map(|m| m as usize).or(defaults.max_tokens),
        stop: req.stop.clone(),
        keep_special_tokens: false,
    })
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
                .map(|(id, text, lp)| v1::TopLogprob { token_id: *id, token: text.clone(), logprob: *lp })
                .collect(),
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
