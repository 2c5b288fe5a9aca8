//! Hugging Face chat templates through minijinja. The environment reproduces what
//! `transformers` gives templates: `trim_blocks`/`lstrip_blocks`, loop controls, Python string and
//! dict methods, `raise_exception`, `strftime_now`, and a `tojson` that writes JSON the way
//! Python's `json.dumps` does (", " and ": " separators, non-ASCII kept), since templates embed
//! tool schemas with it and the model was trained on exactly that text.

use std::fmt::Write;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use crate::error::{EngineError, Result};

/// One message as the template sees it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, or another role the template knows.
    pub role: String,
    /// Text content (`None` for an assistant turn that only calls tools).
    pub content: Option<String>,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant turn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning text of an earlier assistant turn, for templates that render it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A function call made by the assistant.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolCall {
    /// Call id (`call_…`).
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name and arguments.
    pub function: FunctionCall,
}

/// The function part of a [`ToolCall`]. Templates index into the arguments, so they are passed
/// as a JSON value (a JSON string in the OpenAI API is parsed first).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments object.
    pub arguments: serde_json::Value,
}

/// A compiled chat template with the tokenizer's BOS/EOS strings.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

/// What to render.
#[derive(Clone, Debug, Default)]
pub struct ChatInput<'a> {
    /// The conversation.
    pub messages: &'a [ChatMessage],
    /// Tool definitions (OpenAI `tools` array entries), if any.
    pub tools: Option<&'a [serde_json::Value]>,
    /// End with the assistant turn's opening.
    pub add_generation_prompt: bool,
    /// End right after the final message's text, which must be the assistant's, so the model
    /// continues it (transformers' `continue_final_message`); excludes `add_generation_prompt`.
    pub continue_final_message: bool,
    /// Extra variables (e.g. `enable_thinking`).
    pub extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The rules of continuing the final message, which need no template (a caller that picks the
/// model by name checks them before loading it): the conversation ends with an assistant
/// message that calls no tools, and no generation prompt is added after it.
pub fn check_continuation(messages: &[ChatMessage], add_generation_prompt: bool) -> Result<()> {
    let field = "continue_final_message";
    let last = messages.last().ok_or_else(|| EngineError::invalid("messages", "must hold at least one message"))?;
    if last.role != "assistant" {
        return Err(EngineError::invalid(
            field,
            format!(
                "needs the conversation to end with an assistant message to continue; it ends with a '{}' message",
                last.role
            ),
        ));
    }
    if add_generation_prompt {
        return Err(EngineError::invalid(field, "cannot be combined with add_generation_prompt"));
    }
    if !last.tool_calls.is_empty() {
        return Err(EngineError::invalid(field, "cannot continue an assistant message that calls tools"));
    }
    Ok(())
}

/// Marks where the final message's text ends in a rendering for `continue_final_message`: a
/// private-use code point no tokenizer or template treats specially, so whatever the template
/// does around the text (trimming it, closing the turn), the cut lands right after it.
const CONTINUE_MARK: &str = "\u{F8FF}zeta-continue\u{F8FF}";

impl ChatTemplate {
    /// Compiles `source`; errors name the template's line.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg).with_source(Raised))
        });
        env.add_function("strftime_now", |fmt: String| chrono::Local::now().format(&fmt).to_string());
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| EngineError::Template(format!("the model's chat template does not compile: {e:#}")))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.unwrap_or_default(),
            eos_token: eos_token.unwrap_or_default(),
        })
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Phi-4-mini's template renders the tools from the system message's `tools` field and
    /// ignores the `tools` variable that transformers and this engine pass.
    fn tools_in_system_message(&self) -> bool {
        self.source.contains("<|tool|>") && self.source.contains("message['tools']")
    }

    /// Renders a conversation to the prompt text.
    ///
    /// An assistant turn that only calls tools has no content (`None`, as transformers passes
    /// it); templates written without tools in mind add it to a string and fail. Such a
    /// conversation is rendered again with empty strings for the missing contents, which every
    /// template reads as "no text".
    pub fn render(&self, input: &ChatInput<'_>) -> Result<String> {
        if input.continue_final_message {
            return self.render_continued(input);
        }
        let messages = serde_json::to_value(input.messages).expect("messages serialize");
        let first = self.render_messages(messages, input);
        let failed = match first {
            Ok(text) => return Ok(text),
            Err(e) => e,
        };
        if !raised(&failed) && input.messages.iter().any(|m| m.content.is_none()) {
            let filled: Vec<ChatMessage> = input
                .messages
                .iter()
                .map(|m| ChatMessage { content: Some(m.content.clone().unwrap_or_default()), ..m.clone() })
                .collect();
            let messages = serde_json::to_value(&filled).expect("messages serialize");
            if let Ok(text) = self.render_messages(messages, input) {
                return Ok(text);
            }
        }
        Err(if raised(&failed) {
            // `raise_exception` from the template: its message is meant for the user.
            EngineError::invalid("messages", failed.detail().unwrap_or("rejected by the chat template").to_string())
        } else if failed.kind() == ErrorKind::InvalidOperation {
            // The template could not handle these messages (a type or value it did not expect).
            EngineError::invalid(
                "messages",
                format!("the model's chat template cannot render these messages: {}", failed.detail().unwrap_or("")),
            )
        } else {
            EngineError::Template(format!("{failed:#}"))
        })
    }

    /// The conversation up to the end of the final (assistant) message's text, rendered with a
    /// mark after that text and cut at the mark.
    fn render_continued(&self, input: &ChatInput<'_>) -> Result<String> {
        let field = "continue_final_message";
        check_continuation(input.messages, input.add_generation_prompt)?;
        let mut messages = input.messages.to_vec();
        let final_message = messages.last_mut().expect("checked above");
        let text = final_message.content.take().unwrap_or_default();
        final_message.content = Some(format!("{text}{CONTINUE_MARK}"));
        let marked = ChatInput { messages: &messages, continue_final_message: false, ..input.clone() };
        let rendered = self.render(&marked)?;
        match rendered.rfind(CONTINUE_MARK) {
            Some(at) => Ok(rendered[..at].to_string()),
            None => Err(EngineError::invalid(
                field,
                "the model's chat template does not render the final assistant message's text, so it cannot be continued",
            )),
        }
    }

    /// The variables every render sets from the request and the model; extra variables of these
    /// names would be overridden.
    pub const SERVER_VARIABLES: [&'static str; 5] =
        ["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"];

    fn render_messages(
        &self,
        mut messages: serde_json::Value,
        input: &ChatInput<'_>,
    ) -> std::result::Result<String, Error> {
        let tmpl = self.env.get_template("chat").expect("added in new");
        let mut ctx = serde_json::Map::new();
        if let Some(extra) = input.extra {
            ctx.extend(extra.clone());
        }
        if let Some(tools) = input.tools.filter(|t| !t.is_empty())
            && self.tools_in_system_message()
        {
            tools_into_system_message(&mut messages, tools);
        }
        ctx.insert("messages".into(), messages);
        ctx.insert("tools".into(), input.tools.map(|t| serde_json::Value::Array(t.to_vec())).unwrap_or_default());
        ctx.insert("add_generation_prompt".into(), input.add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        tmpl.render(Value::from(minijinja::value::Serde(&ctx)))
    }
}

/// Marks the errors of the template's own `raise_exception` (a message for the user), apart from
/// minijinja's errors of the same kind (the template met a value it cannot handle).
#[derive(Debug)]
struct Raised;

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the chat template")
    }
}

impl std::error::Error for Raised {}

fn raised(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<Raised>())
}

/// The system message that offers tools to a template reading them from there: the request's
/// functions as a JSON list (Python's spelling) in the first system message's `tools`, or in a new
/// system message of the model card's wording when the conversation has none. A `tools` field the
/// caller set is left alone.
fn tools_into_system_message(messages: &mut serde_json::Value, tools: &[serde_json::Value]) {
    let functions: Vec<serde_json::Value> =
        tools.iter().map(|t| t.get("function").cloned().unwrap_or_else(|| t.clone())).collect();
    let mut text = String::new();
    dump(&serde_json::Value::Array(functions), None, 0, &mut text);
    let Some(list) = messages.as_array_mut() else { return };
    match list.first_mut().and_then(|m| m.as_object_mut()).filter(|m| m.get("role").is_some_and(|r| r == "system")) {
        Some(system) => {
            system.entry("tools").or_insert(text.into());
        }
        None => list.insert(
            0,
            serde_json::json!({"role": "system", "content": "You are a helpful assistant with some tools.", "tools": text}),
        ),
    }
}

/// Python `json.dumps(value, ensure_ascii=False, indent=indent)`.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    dump(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn dump(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").unwrap(),
            (_, Some(u), _) => write!(out, "{u}").unwrap(),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        J::String(s) => dump_str(s, out),
        J::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                dump(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                dump_str(k, out);
                out.push_str(": ");
                dump(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `1.0` not `1`, exponent form as `1e-05`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_matches_python_json_dumps() {
        let v = serde_json::json!({"name": "get_weather", "params": {"city": "Zürich \"q\"", "n": [1, 2.5, 1e-05]}, "ok": true, "none": null});
        let mut out = String::new();
        dump(&v, None, 0, &mut out);
        assert_eq!(
            out,
            r#"{"name": "get_weather", "params": {"city": "Zürich \"q\"", "n": [1, 2.5, 1e-05]}, "ok": true, "none": null}"#
        );
        let mut out = String::new();
        dump(&serde_json::json!({"a": [1, {}]}), Some(2), 0, &mut out);
        assert_eq!(out, "{\n  \"a\": [\n    1,\n    {}\n  ]\n}");
    }

    #[test]
    fn raise_exception_is_an_invalid_argument() {
        let t = ChatTemplate::new("{{ raise_exception('System role not supported') }}", None, None).unwrap();
        let e = t.render(&ChatInput::default()).unwrap_err();
        assert!(matches!(e, EngineError::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().contains("System role not supported"), "{e}");
        assert!(!e.to_string().contains("cannot render"), "the template's own words, as they are: {e}");
    }

    #[test]
    fn a_turn_without_content_renders_in_a_template_that_adds_strings() {
        // SmolLM2's template adds `message['content']` to strings; OpenAI clients send
        // `"content": null` on an assistant turn that only called tools.
        let t =
            ChatTemplate::new("{% for m in messages %}<{{ m['role'] + '>' + m['content'] }}|{% endfor %}", None, None)
                .unwrap();
        let msgs = [
            ChatMessage { role: "user".into(), content: Some("hi".into()), ..Default::default() },
            ChatMessage { role: "assistant".into(), content: None, ..Default::default() },
            ChatMessage { role: "tool".into(), content: Some("42".into()), ..Default::default() },
        ];
        let text = t.render(&ChatInput { messages: &msgs, ..Default::default() }).unwrap();
        assert_eq!(text, "<user>hi|<assistant>|<tool>42|");
        // A template that reads the missing content as none still sees none.
        let t = ChatTemplate::new("{% for m in messages %}{{ m.content is none }}|{% endfor %}", None, None).unwrap();
        assert_eq!(t.render(&ChatInput { messages: &msgs, ..Default::default() }).unwrap(), "False|True|False|");
    }

    #[test]
    fn a_template_that_cannot_render_the_messages_says_so() {
        let t = ChatTemplate::new("{{ messages[0]['content'] + 1 }}", None, None).unwrap();
        let msgs = [ChatMessage { role: "user".into(), content: Some("hi".into()), ..Default::default() }];
        let e = t.render(&ChatInput { messages: &msgs, ..Default::default() }).unwrap_err();
        assert!(matches!(e, EngineError::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().contains("cannot render these messages"), "{e}");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.role.startswith('us') }}{% endfor %}",
            None,
            None,
        )
        .unwrap();
        let msgs = [ChatMessage { role: "user".into(), content: Some("  hi  ".into()), ..Default::default() }];
        let out = t.render(&ChatInput { messages: &msgs, ..Default::default() }).unwrap();
        // Jinja2 prints Python booleans, and so does minijinja 3: templates that echo a test see `True`.
        assert_eq!(out, "HI|True");
    }
}
