//! gpt-oss's harmony format: the answer is a series of messages, each a header (channel and
//! recipient), `<|message|>`, a body and a terminator. The `analysis` channel is reasoning; the
//! `final` channel (and `commentary` with no recipient, the model's preambles) is the answer; a
//! message addressed `to=functions.NAME` is a tool call whose body is the arguments' JSON.
//!
//! ```text
//! <|channel|>analysis<|message|>Need the weather.<|end|>
//! <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>
//! <|channel|>final<|message|>It is sunny.<|return|>
//! ```
//!
//! The markers are special tokens, so the detokenizer keeps them for this parser. `<|return|>` and
//! `<|call|>` end generation (they are EOS ids) and so never reach it; the end of the output ends
//! the last message. Bodies stream as they arrive, holding back only what may be the start of a
//! terminator.

use serde_json::Value;

use super::{ForcedChoice, ParsedCall, ToolEvent, new_call_id};
use crate::constraint::compact_parameters;

const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const CONSTRAIN: &str = "<|constrain|>";
const TERMINATORS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];
/// A header longer than this without `<|message|>` is not a header: the text is the answer.
const MAX_HEADER: usize = 512;

/// Whether a chat template renders harmony.
pub fn template_is_harmony(chat_template: &str) -> bool {
    chat_template.contains(CHANNEL) && chat_template.contains(MESSAGE)
}

/// Text appended to the generation prompt to oblige a call: the commentary channel addressed
/// to any function (`required`; the model writes the name) or to the named one, up to its body.
pub fn forced_prefix(choice: &ForcedChoice) -> String {
    match choice {
        ForcedChoice::Required => format!("{CHANNEL}commentary to=functions."),
        ForcedChoice::Function(name) => format!("{CHANNEL}commentary to=functions.{name} {CONSTRAIN}json{MESSAGE}"),
    }
}

/// The grammar of what follows [`forced_prefix`]: for a named function its arguments under its
/// schema; for `required` one of the offered names, the rest of the header and the arguments.
/// `special(text)` gives the id of a special token (`<|constrain|>`, `<|message|>`); `None` when
/// no offered tool can be called.
pub fn forced_grammar(
    choice: &ForcedChoice,
    tools: &[(String, Value)],
    special: &dyn Fn(&str) -> Option<u32>,
) -> Option<String> {
    let lit = |s: &str| Value::String(s.to_string()).to_string();
    match choice {
        ForcedChoice::Function(f) => {
            let (_, schema) = tools.iter().find(|(n, _)| n == f)?;
            Some(format!("start: args\nargs: %json {}\n", compact_parameters(schema)))
        }
        ForcedChoice::Required => {
            if tools.is_empty() {
                return None;
            }
            // The markers as the special tokens they are in gpt-oss's vocabulary; spelled out
            // where a vocabulary lacks them as tokens of their own.
            let marker = |m: &str| special(m).map_or_else(|| lit(m), |id| format!("<[{id}]>"));
            let (constrain, message) = (marker(CONSTRAIN), marker(MESSAGE));
            let mut rules =
                vec![format!("start: {}", (0..tools.len()).map(|i| format!("c_{i}")).collect::<Vec<_>>().join(" | "))];
            for (i, (name, schema)) in tools.iter().enumerate() {
                rules.push(format!("c_{i}: {} {constrain} \"json\" {message} a_{i}", lit(&format!("{name} "))));
                rules.push(format!("a_{i}: %json {}", compact_parameters(schema)));
            }
            Some(rules.join("\n") + "\n")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Content,
    Call,
}

#[derive(Debug)]
struct Call {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// Reads harmony output into reasoning, content and tool calls as it streams.
#[derive(Debug)]
pub struct HarmonyParser {
    names: Vec<String>,
    buf: String,
    /// `None` while reading a header.
    body: Option<Kind>,
    call: Option<Call>,
    calls: Vec<ParsedCall>,
    next_index: usize,
    malformed: bool,
    /// Output of a forced prefix, handed out with the first push.
    queued: (String, Vec<ToolEvent>),
}

impl HarmonyParser {
    /// Whether the output is inside the analysis (reasoning) channel.
    pub fn in_reasoning(&self) -> bool {
        matches!(self.body, Some(Kind::Reasoning))
    }

    /// A parser offering `tool_names` (empty: none, so no message becomes a call) that has
    /// already read `prefix` (a forced call's opening, part of the prompt).
    pub fn new(tool_names: Vec<String>, prefix: &str) -> HarmonyParser {
        let mut p = HarmonyParser {
            names: tool_names,
            buf: String::new(),
            body: None,
            call: None,
            calls: Vec::new(),
            next_index: 0,
            malformed: false,
            queued: Default::default(),
        };
        p.queued = p.push(prefix);
        p
    }

    /// Feeds generated text; returns the reasoning and the events (content, calls) it completes.
    pub fn push(&mut self, text: &str) -> (String, Vec<ToolEvent>) {
        let (mut reasoning, mut events) = std::mem::take(&mut self.queued);
        self.buf.push_str(text);
        self.run(false, &mut reasoning, &mut events);
        (reasoning, events)
    }

    /// Ends the output: the message in progress ends with it.
    pub fn finish(&mut self) -> (String, Vec<ToolEvent>) {
        let (mut reasoning, mut events) = std::mem::take(&mut self.queued);
        self.run(true, &mut reasoning, &mut events);
        if self.body.is_none() && !self.buf.is_empty() {
            let text = std::mem::take(&mut self.buf);
            // A header cut before its `<|message|>` (a stop string, the token limit) is markup,
            // not answer; text that never became a message is shown rather than lost.
            if !(text.contains(CHANNEL) || text.contains(START) || text.contains(CONSTRAIN)) {
                events.push(ToolEvent::Text(strip_markers(&text)));
            }
        }
        if self.body.is_some() {
            self.end_message(&mut events);
        }
        (reasoning, events)
    }

    /// Whether a call's arguments are being read: output that ends here by a cut (a stop
    /// string, the token limit) ends the call unfinished.
    pub fn in_call(&self) -> bool {
        self.call.is_some()
    }

    /// The completed calls.
    pub fn calls(&self) -> &[ParsedCall] {
        &self.calls
    }

    /// Whether a call was addressed to a function not offered, or its arguments were not a JSON
    /// object.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    fn run(&mut self, eof: bool, reasoning: &mut String, events: &mut Vec<ToolEvent>) {
        loop {
            match self.body {
                None => {
                    let Some(at) = self.buf.find(MESSAGE) else {
                        if self.buf.len() > MAX_HEADER && !self.buf.contains(CHANNEL) {
                            self.body = Some(Kind::Content);
                            continue;
                        }
                        return;
                    };
                    let header: String = self.buf.drain(..at + MESSAGE.len()).collect();
                    self.begin_message(&header[..at], events);
                }
                Some(kind) => {
                    let end = TERMINATORS.iter().filter_map(|t| self.buf.find(t).map(|i| (i, t.len()))).min();
                    let (take, rest) = match end {
                        Some((i, len)) => (i, Some(len)),
                        None if eof => (self.buf.len(), None),
                        None => (self.buf.len() - partial_marker(&self.buf), None),
                    };
                    let piece: String = self.buf.drain(..take).collect();
                    self.emit(kind, piece, reasoning, events);
                    match rest {
                        Some(len) => {
                            self.buf.drain(..len);
                            self.end_message(events);
                        }
                        None => return,
                    }
                }
            }
        }
    }

    /// Reads a header (`<|start|>assistant to=… <|channel|>name <|constrain|>json`, any part
    /// optional) and opens its message.
    fn begin_message(&mut self, header: &str, events: &mut Vec<ToolEvent>) {
        let recipient = header
            .split_once("to=")
            .map(|(_, r)| r.split(|c: char| c.is_whitespace() || c == '<').next().unwrap_or("").to_string());
        let channel = header
            .split_once(CHANNEL)
            .map(|(_, c)| c.split(|c: char| c.is_whitespace() || c == '<').next().unwrap_or(""));
        let kind = match recipient.as_deref().and_then(|r| r.strip_prefix("functions.")) {
            Some(name) => {
                if self.names.iter().any(|n| n == name) {
                    let (index, id) = (self.next_index, new_call_id());
                    self.next_index += 1;
                    events.push(ToolEvent::CallStart { index, id: id.clone(), name: name.to_string() });
                    self.call = Some(Call { index, id, name: name.to_string(), arguments: String::new() });
                    Kind::Call
                } else {
                    // No tools offered, or hidden (`tool_choice: none`), or another name.
                    tracing::debug!(name, "harmony call to a function not offered; shown as text");
                    self.malformed = true;
                    Kind::Content
                }
            }
            None if channel == Some("analysis") => Kind::Reasoning,
            None => Kind::Content,
        };
        self.body = Some(kind);
    }

    fn emit(&mut self, kind: Kind, piece: String, reasoning: &mut String, events: &mut Vec<ToolEvent>) {
        if piece.is_empty() {
            return;
        }
        match kind {
            Kind::Reasoning => reasoning.push_str(&piece),
            Kind::Content => match events.last_mut() {
                Some(ToolEvent::Text(t)) => t.push_str(&piece),
                _ => events.push(ToolEvent::Text(piece)),
            },
            Kind::Call => {
                if let Some(c) = self.call.as_mut() {
                    c.arguments.push_str(&piece);
                    events.push(ToolEvent::CallArgs { index: c.index, fragment: piece });
                }
            }
        }
    }

    fn end_message(&mut self, events: &mut Vec<ToolEvent>) {
        if let Some(c) = self.call.take() {
            let ok = serde_json::from_str::<Value>(c.arguments.trim()).is_ok_and(|v| v.is_object());
            if !ok {
                tracing::debug!(name = %c.name, "harmony call arguments are not a JSON object");
                self.malformed = true;
            }
            events.push(ToolEvent::CallEnd { index: c.index });
            self.calls.push(ParsedCall { id: c.id, name: c.name, arguments: c.arguments.trim().to_string() });
        }
        self.body = None;
    }
}

/// Bytes at the end of `s` that may begin a terminator.
fn partial_marker(s: &str) -> usize {
    (1..s.len().min(12))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && TERMINATORS.iter().any(|t| t.starts_with(&s[s.len() - n..])))
        .unwrap_or(0)
}

/// Header leftovers at the end of an output, without the markers.
fn strip_markers(s: &str) -> String {
    [START, CHANNEL, CONSTRAIN].iter().fold(s.to_string(), |acc, m| acc.replace(m, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &mut HarmonyParser, pieces: &[&str]) -> (String, String, Vec<(String, String)>) {
        let (mut reasoning, mut text) = (String::new(), String::new());
        let mut calls: Vec<(String, String)> = vec![];
        let mut all = vec![];
        for piece in pieces {
            let (r, e) = p.push(piece);
            reasoning.push_str(&r);
            all.extend(e);
        }
        let (r, e) = p.finish();
        reasoning.push_str(&r);
        all.extend(e);
        for e in all {
            match e {
                ToolEvent::Text(t) => text.push_str(&t),
                ToolEvent::CallStart { name, .. } => calls.push((name, String::new())),
                ToolEvent::CallArgs { fragment, .. } => calls.last_mut().unwrap().1.push_str(&fragment),
                ToolEvent::CallEnd { .. } => {}
            }
        }
        (reasoning, text, calls)
    }

    #[test]
    fn analysis_is_reasoning_and_final_is_the_answer() {
        let mut p = HarmonyParser::new(vec![], "");
        let out = run(
            &mut p,
            &[
                "<|channel|>analysis<|message|>User asks",
                " 2+2.<|e",
                "nd|><|start|>assistant<|channel|>final<|mes",
                "sage|>4",
                ".",
            ],
        );
        assert_eq!(out, ("User asks 2+2.".into(), "4.".into(), vec![]));
        assert!(!p.malformed());
    }

    #[test]
    fn a_commentary_message_to_a_function_is_a_call() {
        let mut p = HarmonyParser::new(vec!["get_weather".into()], "");
        let out = run(
            &mut p,
            &[
                "<|channel|>analysis<|message|>Need weather.<|end|>",
                "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
                "{\"city\":",
                "\"Paris\"}",
            ],
        );
        assert_eq!(out.0, "Need weather.");
        assert_eq!(out.1, "");
        assert_eq!(out.2, vec![("get_weather".to_string(), "{\"city\":\"Paris\"}".to_string())]);
        assert_eq!(p.calls()[0].arguments, "{\"city\":\"Paris\"}");
        // The recipient may also come before the channel.
        let mut p = HarmonyParser::new(vec!["f".into()], "");
        let out = run(&mut p, &[" to=functions.f<|channel|>commentary json<|message|>{}<|call|>"]);
        assert_eq!(out.2, vec![("f".to_string(), "{}".to_string())]);
    }

    #[test]
    fn a_forced_prefix_opens_the_call_and_bad_calls_are_flagged() {
        let prefix = forced_prefix(&ForcedChoice::Function("f".into()));
        let mut p = HarmonyParser::new(vec!["f".into()], &prefix);
        let out = run(&mut p, &["{\"a\":1}"]);
        assert_eq!(out.2, vec![("f".to_string(), "{\"a\":1}".to_string())]);
        let mut p = HarmonyParser::new(vec!["f".into()], "");
        let out = run(&mut p, &["<|channel|>commentary to=functions.nope<|message|>{}<|call|>"]);
        assert_eq!((out.1.as_str(), out.2.len(), p.malformed()), ("{}", 0, true));
        let mut p = HarmonyParser::new(vec![], "");
        run(&mut p, &["<|channel|>commentary to=functions.f<|message|>{oops"]);
        assert!(p.malformed());
    }

    #[test]
    fn text_without_a_header_is_not_lost() {
        let mut p = HarmonyParser::new(vec![], "");
        assert_eq!(run(&mut p, &["just words"]).1, "just words");
    }

    #[test]
    fn without_tools_offered_nothing_is_a_call_and_a_cut_header_is_no_text() {
        let mut p = HarmonyParser::new(vec![], "");
        let out =
            run(&mut p, &["<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|call|>"]);
        assert_eq!((out.1.as_str(), out.2.len()), ("{}", 0));
        // Cut inside a header (a stop string, the token limit): neither a call nor header text.
        let mut p = HarmonyParser::new(vec!["get_weather".into()], "");
        let out = run(
            &mut p,
            &["<|channel|>final<|message|>Hi.<|end|><|start|>assistant<|channel|>commentary to=functions."],
        );
        assert_eq!((out.1.as_str(), out.2.len()), ("Hi.", 0));
        // Cut inside the arguments: the call is open when the output ends.
        let mut p = HarmonyParser::new(vec!["get_weather".into()], "");
        p.push("<|channel|>commentary to=functions.get_weather<|message|>{\"city\": \"");
        assert!(p.in_call());
    }
}
