//! The streaming tool-call parser: finds where each format's calls begin in generated text, holds
//! back only what might be the start of a marker, and turns calls into [`ToolEvent`]s as their
//! pieces arrive. The JSON inside a call is `call.rs`'s job; this module owns the framing around
//! it (`<tool_call>…</tool_call>`, Llama 3's bare JSON and `;`, Mistral's `[TOOL_CALLS]` forms,
//! Phi-4-mini's lists after `<|tool_call|>` or `functools`),
//! call ids and indices, and falling back to plain text when a call turns out to be malformed.

use super::call::{CallObject, Outcome, Piece};
use super::{ParsedCall, ToolEvent, ToolFormat, new_call_id};

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const PHI4_CALLS: &str = "<|tool_call|>";
const PHI4_CLOSE: &str = "<|/tool_call|>";
/// Only with its list's bracket: `functools` alone is a Python module people write about.
const FUNCTOOLS: &str = "functools[";

/// The markers that open calls in `format`.
fn openers(format: ToolFormat) -> &'static [&'static str] {
    match format {
        ToolFormat::Hermes => &[HERMES_OPEN],
        ToolFormat::Llama3 => &[PYTHON_TAG],
        ToolFormat::Mistral => &[MISTRAL_CALLS],
        ToolFormat::Phi4Mini => &[PHI4_CALLS, FUNCTOOLS],
    }
}

/// Where the parser is in the output.
#[derive(Debug)]
enum Mode {
    /// Ordinary content, watching for a marker.
    Text,
    /// Just after a finished call: whitespace here is held (and dropped if another call or the
    /// end follows), and the format's closing marker or separator is swallowed.
    PostCall { separator: bool },
    /// Inside a call's JSON; `in_array`: one element of Mistral's `[TOOL_CALLS][…]` list.
    Object { obj: CallObject, in_array: bool },
    /// Right after `[TOOL_CALLS]`: which of Mistral's forms follows?
    MistralHead,
    /// Reading the function name of `[TOOL_CALLS]name[ARGS]{…}`.
    MistralName(String),
    /// Skipping the model's own id in `name[CALL_ID]id[ARGS]{…}`.
    MistralCallId,
    /// Between the elements of `[TOOL_CALLS][…]`; `after_obj`: an element just ended.
    MistralArray { after_obj: bool },
}

/// The call being parsed, once its name is known and accepted.
#[derive(Debug)]
struct Started {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// Turns a model's streamed text into content and tool calls (see the module docs of
/// [`crate::tools`] for the event contract).
#[derive(Debug)]
pub struct ToolCallParser {
    format: ToolFormat,
    names: Vec<String>,
    /// Text received but not yet decided on (a possible marker start, held whitespace).
    buf: String,
    mode: Mode,
    /// Nothing but whitespace has been seen: bare-JSON calls (Llama 3) may still begin.
    at_start: bool,
    /// Raw text of the call attempt in progress, given back as content if it fails.
    raw: String,
    /// The attempt began at an explicit marker (or a forced prefix), so failing is an error,
    /// not just JSON-looking content.
    explicit: bool,
    /// Argument text seen before the name (the model wrote `arguments` first).
    early_args: String,
    current: Option<Started>,
    next_index: usize,
    calls: Vec<ParsedCall>,
    malformed: bool,
    saw_calls: bool,
    /// Events produced while consuming a forced prefix, handed out by the next push or finish.
    queued: Vec<ToolEvent>,
}

impl ToolCallParser {
    /// A parser for `format`. `tool_names` are the functions the request offered; a call to any
    /// other name is malformed. An empty list accepts any name.
    pub fn new(format: ToolFormat, tool_names: Vec<String>) -> ToolCallParser {
        ToolCallParser {
            format,
            names: tool_names,
            buf: String::new(),
            mode: Mode::Text,
            at_start: true,
            raw: String::new(),
            explicit: false,
            early_args: String::new(),
            current: None,
            next_index: 0,
            calls: Vec::new(),
            malformed: false,
            saw_calls: false,
            queued: Vec::new(),
        }
    }

    /// A parser that has already consumed `prefix`, the text appended to the prompt by
    /// [`ToolFormat::forced_prefix`]. A `CallStart` the prefix implies (a forced function) comes
    /// out of the first [`push`](Self::push) or [`finish`](Self::finish).
    pub fn with_prefix(format: ToolFormat, tool_names: Vec<String>, prefix: &str) -> ToolCallParser {
        let mut p = ToolCallParser::new(format, tool_names);
        p.queued = p.push_prompt_prefix(prefix);
        p
    }

    /// Consumes text that is part of the prompt, not of the output (a forced prefix): it yields
    /// no `Text`, but the call events it implies (a `CallStart` once a forced name is complete).
    /// A call it opens must then be completed by the model; anything else is malformed.
    pub fn push_prompt_prefix(&mut self, prefix: &str) -> Vec<ToolEvent> {
        let mut out = self.push(prefix);
        out.retain(|e| !matches!(e, ToolEvent::Text(_)));
        if !matches!(self.mode, Mode::Text | Mode::PostCall { .. }) {
            self.explicit = true;
        }
        // Content given back for a failed call should be what the model wrote, not the prompt.
        self.raw.clear();
        out
    }

    /// Feeds the next piece of generated text; returns what it completes.
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        let mut out = std::mem::take(&mut self.queued);
        self.buf.push_str(text);
        self.run(false, &mut out);
        out
    }

    /// Ends the output: releases held-back text and closes (or gives back as text) an
    /// unfinished call.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let mut out = std::mem::take(&mut self.queued);
        self.run(true, &mut out);
        debug_assert!(self.buf.is_empty(), "text left undecided at the end: {:?}", self.buf);
        match self.mode {
            Mode::Text | Mode::PostCall { .. } | Mode::MistralArray { after_obj: true } => {}
            _ => self.fail(&mut out),
        }
        self.mode = Mode::Text;
        out
    }

    /// Ends an output the engine cut short (`max_tokens`, a stop string). A call already
    /// started stays a call, its arguments as far as they got — what the streamed deltas said,
    /// so streamed and whole answers agree and the text is not given twice; an attempt that
    /// opened with its marker but was cut before its name is dropped (markup, and no call), one
    /// without a marker (bare JSON that may have been text) is given back as text as at any end.
    /// Returns whether a call was cut.
    pub fn finish_cut(&mut self) -> (Vec<ToolEvent>, bool) {
        let mut out = std::mem::take(&mut self.queued);
        self.run(true, &mut out);
        let cut = match self.current.take() {
            Some(c) => {
                emit(&mut out, ToolEvent::CallEnd { index: c.index });
                self.calls.push(ParsedCall { id: c.id, name: c.name, arguments: c.arguments });
                self.raw.clear();
                self.early_args.clear();
                self.explicit = false;
                true
            }
            None if self.explicit => {
                // Its marker came, its name never did: markup, not text for the reader (nor a
                // call: there is nothing to call).
                tracing::debug!(raw = %self.raw, "tool call cut before its name: dropped");
                self.raw.clear();
                self.early_args.clear();
                self.explicit = false;
                false
            }
            None => {
                if !matches!(self.mode, Mode::Text | Mode::PostCall { .. } | Mode::MistralArray { after_obj: true }) {
                    self.fail(&mut out);
                }
                false
            }
        };
        self.buf.clear();
        self.mode = Mode::Text;
        (out, cut)
    }

    /// Whether some call was malformed (bad JSON, unknown name, cut off) and given back as text.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// The calls completed so far, with their full arguments, for non-streaming responses.
    pub fn calls(&self) -> &[ParsedCall] {
        &self.calls
    }

    /// Whether any call was started (a `CallStart` was emitted), even one that later failed.
    pub fn saw_calls(&self) -> bool {
        self.saw_calls
    }

    /// The format this parser reads.
    pub fn format(&self) -> ToolFormat {
        self.format
    }

    /// Processes as much of `buf` as can be decided; `eof`: no more text will come.
    fn run(&mut self, eof: bool, out: &mut Vec<ToolEvent>) {
        let s = std::mem::take(&mut self.buf);
        let mut pos = 0;
        while pos < s.len() {
            let rest = &s[pos..];
            let used = match self.mode {
                Mode::Text => self.text(rest, eof, out),
                Mode::PostCall { separator } => self.post_call(rest, separator, eof),
                Mode::Object { .. } => self.object(rest, out),
                Mode::MistralHead => self.mistral_head(rest),
                Mode::MistralName(_) => self.mistral_name(rest, eof, out),
                Mode::MistralCallId => self.mistral_call_id(rest, eof, out),
                Mode::MistralArray { after_obj } => self.mistral_array(rest, after_obj, eof, out),
            };
            match used {
                Some(n) => pos += n,
                None => break,
            }
        }
        self.buf = s[pos..].to_string();
    }

    /// Content: emits all but a possible marker start. Returns bytes consumed, None to wait.
    fn text(&mut self, rest: &str, eof: bool, out: &mut Vec<ToolEvent>) -> Option<usize> {
        if self.at_start && matches!(self.format, ToolFormat::Llama3 | ToolFormat::Mistral) {
            let body = rest.trim_start();
            let ws = rest.len() - body.len();
            let opener = match self.format {
                // Llama 3 writes its JSON call as the whole answer (`<|python_tag|>` is a special
                // token that detokenizing usually drops).
                ToolFormat::Llama3 => body.starts_with('{').then_some(ws),
                // Mistral's `[TOOL_CALLS]` is special too; a list of call objects at the very
                // start is the same call with its marker dropped.
                _ if body.starts_with('[') => {
                    let inner = body[1..].trim_start();
                    if inner.is_empty() && !eof {
                        return None;
                    }
                    inner.starts_with('{').then_some(rest.len() - inner.len())
                }
                _ => None,
            };
            if body.is_empty() && !eof {
                return None;
            }
            self.at_start = false;
            if let Some(n) = opener {
                self.begin(&rest[..n], false);
                self.mode = match self.format {
                    ToolFormat::Llama3 => Mode::Object { obj: CallObject::new(true), in_array: false },
                    _ => Mode::MistralArray { after_obj: false },
                };
                return Some(n);
            }
        }
        let markers = openers(self.format);
        for (i, _) in rest.char_indices() {
            let tail = &rest[i..];
            if let Some(marker) = markers.iter().find(|m| tail.starts_with(**m)) {
                self.content(&rest[..i], out);
                self.begin(marker, true);
                self.mode = match self.format {
                    ToolFormat::Mistral | ToolFormat::Phi4Mini if *marker != FUNCTOOLS => Mode::MistralHead,
                    ToolFormat::Phi4Mini => Mode::MistralArray { after_obj: false },
                    _ => Mode::Object { obj: CallObject::new(false), in_array: false },
                };
                return Some(i + marker.len());
            }
            if !eof && markers.iter().any(|m| m.starts_with(tail)) {
                // Maybe a marker: hold it back until the next piece decides.
                self.content(&rest[..i], out);
                return if i == 0 { None } else { Some(i) };
            }
        }
        self.content(rest, out);
        Some(rest.len())
    }

    fn content(&mut self, text: &str, out: &mut Vec<ToolEvent>) {
        if !text.is_empty() {
            self.at_start = false;
            emit(out, ToolEvent::Text(text.to_string()));
        }
    }

    /// After a call: swallow the closing marker or separator; hold whitespace.
    fn post_call(&mut self, rest: &str, separator: bool, eof: bool) -> Option<usize> {
        let body = rest.trim_start();
        let ws = rest.len() - body.len();
        if body.is_empty() {
            // Trailing whitespace after the last call is dropped at the end.
            return if eof { Some(rest.len()) } else { None };
        }
        let swallow = match self.format {
            ToolFormat::Hermes => Some(HERMES_CLOSE),
            ToolFormat::Llama3 => Some(";"),
            ToolFormat::Mistral => None,
            ToolFormat::Phi4Mini => Some(PHI4_CLOSE),
        };
        if let Some(m) = swallow.filter(|m| body.starts_with(m)) {
            self.mode = Mode::PostCall { separator: separator || m == ";" };
            return Some(ws + m.len());
        }
        let next = openers(self.format);
        if next.iter().any(|m| body.starts_with(m)) {
            self.mode = Mode::Text;
            return Some(ws);
        }
        if self.format == ToolFormat::Llama3 && body.starts_with('{') {
            // Another bare JSON call; after a `;` it can only be meant as one.
            self.begin("", separator);
            self.mode = Mode::Object { obj: CallObject::new(!separator), in_array: false };
            return Some(ws);
        }
        let partial = next.iter().any(|m| m.starts_with(body)) || swallow.is_some_and(|m| m.starts_with(body));
        if partial && !eof {
            return None;
        }
        // Ordinary content after the calls, with its leading whitespace.
        self.mode = Mode::Text;
        Some(0)
    }

    fn object(&mut self, rest: &str, out: &mut Vec<ToolEvent>) -> Option<usize> {
        let Mode::Object { obj, in_array } = &mut self.mode else { unreachable!() };
        let in_array = *in_array;
        let mut pieces = Vec::new();
        let outcome = obj.feed(rest, &mut pieces);
        let used = match outcome {
            Outcome::More => rest.len(),
            Outcome::Named { used } | Outcome::Done { used } => used,
            Outcome::Failed { at } => at,
        };
        self.raw.push_str(&rest[..used]);
        for p in pieces {
            match p {
                Piece::Name(name) => {
                    if !self.start(name, out) {
                        return Some(used);
                    }
                }
                Piece::Args(a) => self.args(a, out),
            }
        }
        match outcome {
            Outcome::More | Outcome::Named { .. } => {}
            Outcome::Done { .. } => {
                if self.end(out) {
                    self.mode = if in_array {
                        Mode::MistralArray { after_obj: true }
                    } else {
                        Mode::PostCall { separator: false }
                    };
                }
            }
            Outcome::Failed { .. } => self.fail(out),
        }
        Some(used)
    }

    fn mistral_head(&mut self, rest: &str) -> Option<usize> {
        let body = rest.trim_start();
        let ws = rest.len() - body.len();
        if body.is_empty() {
            self.raw.push_str(rest);
            return Some(rest.len());
        }
        self.raw.push_str(&rest[..ws]);
        self.mode = if body.starts_with('[') {
            self.raw.push('[');
            Mode::MistralArray { after_obj: false }
        } else if body.starts_with('{') {
            Mode::Object { obj: CallObject::new(false), in_array: false }
        } else {
            Mode::MistralName(String::new())
        };
        Some(ws + usize::from(body.starts_with('[')))
    }

    fn mistral_name(&mut self, rest: &str, eof: bool, out: &mut Vec<ToolEvent>) -> Option<usize> {
        let Mode::MistralName(name) = &mut self.mode else { unreachable!() };
        let n = rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))).unwrap_or(rest.len());
        name.push_str(&rest[..n]);
        self.raw.push_str(&rest[..n]);
        let tail = &rest[n..];
        if tail.is_empty() {
            return Some(n);
        }
        let name = name.clone();
        // `[ARGS]` itself is a special token; a decoder that drops it leaves `name{…}`.
        let (used, next) = if tail.starts_with(MISTRAL_ARGS) {
            (MISTRAL_ARGS.len(), Mode::Object { obj: CallObject::bare_args(), in_array: false })
        } else if tail.starts_with(MISTRAL_CALL_ID) {
            (MISTRAL_CALL_ID.len(), Mode::MistralCallId)
        } else if tail.starts_with('{') {
            (0, Mode::Object { obj: CallObject::bare_args(), in_array: false })
        } else if (MISTRAL_ARGS.starts_with(tail) || MISTRAL_CALL_ID.starts_with(tail)) && !eof {
            return if n == 0 { None } else { Some(n) };
        } else {
            self.fail(out);
            return Some(n);
        };
        self.raw.push_str(&tail[..used]);
        if name.is_empty() {
            self.fail(out);
            return Some(n + used);
        }
        if !self.start(name, out) {
            return Some(n + used);
        }
        self.mode = next;
        Some(n + used)
    }

    fn mistral_call_id(&mut self, rest: &str, eof: bool, out: &mut Vec<ToolEvent>) -> Option<usize> {
        let n = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        self.raw.push_str(&rest[..n]);
        let tail = &rest[n..];
        if tail.is_empty() {
            return Some(n);
        }
        if tail.starts_with(MISTRAL_ARGS) {
            self.raw.push_str(MISTRAL_ARGS);
            self.mode = Mode::Object { obj: CallObject::bare_args(), in_array: false };
            return Some(n + MISTRAL_ARGS.len());
        }
        if MISTRAL_ARGS.starts_with(tail) && !eof {
            return if n == 0 { None } else { Some(n) };
        }
        self.fail(out);
        Some(n)
    }

    fn mistral_array(&mut self, rest: &str, after_obj: bool, eof: bool, out: &mut Vec<ToolEvent>) -> Option<usize> {
        let body = rest.trim_start();
        let ws = rest.len() - body.len();
        if body.is_empty() {
            if after_obj {
                // As after any call: content may follow, whitespace included.
                return if eof { Some(rest.len()) } else { None };
            }
            self.raw.push_str(rest);
            return Some(rest.len());
        }
        match (after_obj, body.as_bytes()[0]) {
            (false, b'{') => {
                self.raw.push_str(&rest[..ws]);
                let strict = !self.explicit;
                self.mode = Mode::Object { obj: CallObject::new(strict), in_array: true };
                Some(ws)
            }
            (true, b',') => {
                self.begin(&rest[..ws + 1], true);
                self.mode = Mode::MistralArray { after_obj: false };
                Some(ws + 1)
            }
            (_, b']') if after_obj || self.raw.trim_end().ends_with('[') => {
                self.raw.clear();
                self.mode = Mode::PostCall { separator: false };
                Some(ws + 1)
            }
            (true, _) => {
                // Text after the list without its `]`: the calls stand, the rest is content.
                self.mode = Mode::Text;
                Some(0)
            }
            (false, _) => {
                self.raw.push_str(&rest[..ws]);
                self.fail(out);
                Some(ws)
            }
        }
    }

    /// Starts a call attempt whose raw text so far is `raw`.
    fn begin(&mut self, raw: &str, explicit: bool) {
        self.raw.clear();
        self.raw.push_str(raw);
        self.explicit = explicit;
        self.early_args.clear();
        self.current = None;
    }

    /// The call's name is known: emits `CallStart` or, for an unknown name, fails the attempt.
    fn start(&mut self, name: String, out: &mut Vec<ToolEvent>) -> bool {
        if !self.names.is_empty() && !self.names.contains(&name) {
            tracing::debug!(name, "model called a tool that was not offered");
            // Bare JSON (no marker) whose "name" isn't a tool is just JSON content.
            self.fail(out);
            return false;
        }
        let index = self.next_index;
        self.next_index += 1;
        let id = new_call_id();
        self.saw_calls = true;
        emit(out, ToolEvent::CallStart { index, id: id.clone(), name: name.clone() });
        let arguments = std::mem::take(&mut self.early_args);
        if !arguments.is_empty() {
            emit(out, ToolEvent::CallArgs { index, fragment: arguments.clone() });
        }
        self.current = Some(Started { index, id, name, arguments });
        true
    }

    fn args(&mut self, fragment: String, out: &mut Vec<ToolEvent>) {
        match &mut self.current {
            Some(c) => {
                c.arguments.push_str(&fragment);
                emit(out, ToolEvent::CallArgs { index: c.index, fragment });
            }
            None => self.early_args.push_str(&fragment),
        }
    }

    /// The call's JSON is complete: records it, or fails it if the arguments aren't an object.
    fn end(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        let Some(c) = self.current.take() else {
            self.fail(out);
            return false;
        };
        let valid = serde_json::from_str::<serde_json::Value>(&c.arguments).is_ok_and(|v| v.is_object());
        if !valid {
            self.current = Some(c);
            self.fail(out);
            return false;
        }
        emit(out, ToolEvent::CallEnd { index: c.index });
        self.calls.push(ParsedCall { id: c.id, name: c.name, arguments: c.arguments });
        self.raw.clear();
        self.at_start = false;
        true
    }

    /// Abandons the call attempt: closes a started call and gives its raw text back as content.
    /// The output counts as malformed if the attempt began at a marker or got as far as a
    /// `CallStart`; bare JSON that never named a tool is just content.
    fn fail(&mut self, out: &mut Vec<ToolEvent>) {
        let started = self.current.take();
        if let Some(c) = &started {
            emit(out, ToolEvent::CallEnd { index: c.index });
        }
        if self.explicit || started.is_some() {
            tracing::debug!(raw = %self.raw, "malformed tool call given back as content");
            self.malformed = true;
        }
        let raw = std::mem::take(&mut self.raw);
        if !raw.is_empty() {
            emit(out, ToolEvent::Text(raw));
        }
        self.early_args.clear();
        self.explicit = false;
        self.at_start = false;
        self.mode = Mode::Text;
    }
}

/// Appends an event, merging it into the previous one where they continue each other.
fn emit(out: &mut Vec<ToolEvent>, ev: ToolEvent) {
    match (out.last_mut(), ev) {
        (_, ToolEvent::Text(t)) if t.is_empty() => {}
        (Some(ToolEvent::Text(prev)), ToolEvent::Text(t)) => prev.push_str(&t),
        (Some(ToolEvent::CallArgs { index: a, fragment: prev }), ToolEvent::CallArgs { index: b, fragment })
            if *a == b =>
        {
            prev.push_str(&fragment)
        }
        (_, ev) => out.push(ev),
    }
}
