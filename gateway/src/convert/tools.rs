//! Function tools, tool choices and tool results as the chat, Messages and Responses APIs declare
//! them, checked once here for all three.

use serde_json::Value;
use zeta_proto::v1;

use super::fields::{array, boolean, present, type_name};
use super::text_parts;
use crate::error::ApiError;

/// A function name as OpenAI allows it: 1-64 letters, digits, `_`, `-` or `.`.
pub(super) fn valid_function_name(s: &str) -> bool {
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

/// Every tool result must answer a call an earlier assistant turn made (the daemon's rule too):
/// checked here so the error names the field as the client wrote it (`results`: each tool
/// message's index in `messages` and where its call id came from), not the converted list's.
pub(crate) fn answered_calls(messages: &[v1::Message], results: &[(usize, String)]) -> Result<(), ApiError> {
    let mut calls = std::collections::HashSet::new();
    let mut results = results.iter().peekable();
    for (k, m) in messages.iter().enumerate() {
        calls.extend(m.tool_calls.iter().map(|c| c.id.as_str()));
        let Some((_, field)) = results.next_if(|(at, _)| *at == k) else { continue };
        if !calls.contains(m.tool_call_id.as_str()) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "'{}' answers no tool call of an earlier assistant turn",
                    zeta_proto::edge::quote(&m.tool_call_id)
                ),
            ));
        }
    }
    Ok(())
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

/// Chat's `tools`: function tools only.
pub(super) fn tools(v: &Option<Value>) -> Result<Vec<v1::Tool>, ApiError> {
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
        .collect::<Result<Vec<_>, _>>()
        .and_then(|t| distinct(t, |i| format!("tools[{i}].function.name")))
}

/// The tools, each name once: a model told of two functions of one name cannot say which it
/// calls. `name_field(i)` is where tool `i`'s name was written.
pub(crate) fn distinct(tools: Vec<v1::Tool>, name_field: impl Fn(usize) -> String) -> Result<Vec<v1::Tool>, ApiError> {
    let mut seen = std::collections::HashMap::new();
    for (i, t) in tools.iter().enumerate() {
        if let Some(first) = seen.insert(t.name.as_str(), i) {
            return Err(ApiError::invalid(
                name_field(i),
                format!("'{}' is already the name of tools[{first}]", zeta_proto::edge::quote(&t.name)),
            ));
        }
    }
    Ok(tools)
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

/// Chat's `tool_choice`: `none`, `auto`, `required` or a named function among `tools`.
pub(super) fn tool_choice(v: &Option<Value>, tools: &[v1::Tool]) -> Result<Option<v1::ToolChoice>, ApiError> {
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
        // OpenAI's other kinds (`allowed_tools`, `custom`) are known and not served here.
        Value::Object(o) if o.get("type").and_then(Value::as_str).is_some_and(|t| t != "function") => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
            return Err(ApiError::unsupported(
                "tool_choice.type",
                format!(
                    "'{}' tool choices are not supported: use none, auto, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}",
                    zeta_proto::edge::quote(kind)
                ),
            ));
        }
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

/// The object a call's arguments were becoming when the answer was cut short (`max_tokens`, a
/// stop string), as Anthropic's SDK reads a streamed `partial_json` (jiter's partial mode): an
/// unfinished string is dropped with its key, an open array or object is closed, and a dangling
/// key, separator or half-written literal is dropped. `{}` when nothing of an object is there.
/// Whole arguments come back as they are.
pub(crate) fn partial_object(s: &str) -> Value {
    if let Ok(v @ Value::Object(_)) = serde_json::from_str(s) {
        return v;
    }
    let s = &s[..open_string_start(s).unwrap_or(s.len())];
    // Places the text may be cut back to: its end, and before each separator or after each
    // opening outside strings, tried from the longest.
    let (mut cuts, mut in_string, mut escaped) = (vec![s.len()], false, false);
    for (i, c) in s.char_indices() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            (false, _, ',') => cuts.push(i),
            (false, _, '{' | '[') => cuts.push(i + 1),
            _ => {}
        }
    }
    cuts.sort_unstable_by(|a, b| b.cmp(a));
    cuts.dedup();
    for end in cuts.into_iter().take(64) {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str(&closed(&s[..end])) {
            return v;
        }
    }
    Value::Object(Default::default())
}

/// Where the string `s` ends inside begins (its opening quote), if it ends inside one.
fn open_string_start(s: &str) -> Option<usize> {
    let (mut start, mut escaped) = (None, false);
    for (i, c) in s.char_indices() {
        match (start.is_some(), escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => start = None,
            (false, _, '"') => start = Some(i),
            _ => {}
        }
    }
    start
}

/// `s` with what it leaves open closed: arrays and objects, innermost first.
fn closed(s: &str) -> String {
    let (mut open, mut in_string, mut escaped) = (Vec::new(), false, false);
    for c in s.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            (false, _, '{') => open.push('}'),
            (false, _, '[') => open.push(']'),
            (false, _, '}' | ']') => {
                open.pop();
            }
            _ => {}
        }
    }
    let mut out = s.trim_end().to_string();
    out.extend(open.iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::partial_object;

    #[test]
    fn arguments_cut_short_read_as_the_object_they_were_becoming() {
        for (text, want) in [
            (r#"{"city": "Paris", "unit": "celsius"}"#, json!({"city": "Paris", "unit": "celsius"})),
            (r#"{"city": "Paris", "#, json!({"city": "Paris"})),
            // An unfinished string is no value yet: it goes with its key.
            (r#"{"city": "Pa"#, json!({})),
            (r#"{"city": "P\"#, json!({})),
            (r#"{"city": ""#, json!({})),
            (r#"{"city": "Paris", "unit": ""#, json!({"city": "Paris"})),
            (r#"{"a": [1, "x"#, json!({"a": [1]})),
            (r#"{"a": {"b": "c"#, json!({"a": {}})),
            (r#"{"a": 12"#, json!({"a": 12})),
            (r#"{"city": "Paris", "un"#, json!({"city": "Paris"})),
            (r#"{"city": "Paris", "unit":"#, json!({"city": "Paris"})),
            (r#"{"ok": tr"#, json!({})),
            (r#"{"days": [1, 2, {"h": 3"#, json!({"days": [1, 2, {"h": 3}]})),
            (r#"{"q": "a, [b"#, json!({})),
            (r#"{"q": "a\"b", "r": "x\"#, json!({"q": "a\"b"})),
            ("", json!({})),
            ("{", json!({})),
            ("not json", json!({})),
        ] {
            assert_eq!(partial_object(text), want, "{text}");
        }
    }
}
