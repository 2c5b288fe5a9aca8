//! One chat request's prompt rendering and output shaping. They belong together: a forced tool
//! call is started by ending the rendered prompt with the call's opening, which the parser must
//! then know it is inside; the reasoning splitter must know whether the rendered prompt already
//! opened `<think>`; and the parser takes only the tools the request offered. Generation and
//! token counting both render through [`Shaper::render`], so a count is the prompt the model
//! reads.
//!
//! A forced call is also generated under a grammar (see `constraint`): the call's opening is in
//! the prompt, and the rest must be arguments valid under the function's schema and the
//! format's closing, so a forced call always parses and validates.
//!
//! On the output side the order is fixed (see the module above): each decoded piece goes through
//! the [`ReasoningSplitter`], its content part through the [`ToolCallParser`], and the result
//! comes out as one [`ShapedDelta`]; [`Shaper::finish`] flushes both in the same order.

use super::harmony::{self, HarmonyParser};
use super::{ForcedChoice, ReasoningSplitter, ToolCallParser, ToolEvent, ToolFormat};
use crate::constraint::Constraint;
use crate::{ChatInput, Engine, EngineError, GenerateRequest, Prompt, Result};

/// What a request asks of its output's shape.
#[derive(Clone, Debug, Default)]
pub struct Shaping {
    /// A call the model must make (`tool_choice` `required` or a named function).
    pub forced: Option<ForcedChoice>,
    /// Split `<think>` reasoning out of the answer (where the model reasons).
    pub separate_reasoning: bool,
    /// Tools whose arguments are generated under their schema under `auto` too (a forced call
    /// always is).
    pub strict: Vec<String>,
}

/// A fragment of a tool call: the first of each call carries its id and name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallDelta {
    /// The call's position among this answer's calls.
    pub index: usize,
    /// `call_...`, in the call's first fragment only.
    pub id: String,
    /// The function's name, in the call's first fragment only.
    pub name: String,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

/// One shaped piece of output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShapedDelta {
    /// Answer text.
    pub text: String,
    /// Reasoning text.
    pub reasoning: String,
    /// Tool-call fragments.
    pub calls: Vec<CallDelta>,
}

impl ShapedDelta {
    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.reasoning.is_empty() && self.calls.is_empty()
    }
}

/// A chat rendered for the model, with how its output is to be read.
pub struct Rendered {
    /// The prompt text the model reads (a forced call's opening included).
    pub text: String,
    /// Whether the detokenizer must keep special tokens (tool-call markers that some vocabularies
    /// make special).
    pub keep_special_tokens: bool,
    /// The shaper of the output.
    pub shaper: Shaper,
    /// For a forced call: the grammar that keeps the call's arguments valid under its schema.
    pub constraint: Option<Constraint>,
}

/// Per-request output state.
#[derive(Debug, Default)]
pub struct Shaper {
    splitter: Option<ReasoningSplitter>,
    parser: Option<ToolCallParser>,
    /// gpt-oss's harmony output: channels and calls in one parser (instead of the two above).
    harmony: Option<HarmonyParser>,
    /// The function a forced call must name (empty: any), when one is forced.
    forced: Option<String>,
    /// The engine cut the output inside a call (see [`Shaper::finish_cut`]).
    cut_call: bool,
}

/// The names of OpenAI-style tool definitions (`{"type": "function", "function": {"name"}}`).
fn tool_names(tools: &[serde_json::Value]) -> Vec<String> {
    tools.iter().filter_map(|t| t["function"]["name"].as_str().map(String::from)).collect()
}

/// The names and parameter schemas of OpenAI-style tool definitions.
fn tool_schemas(tools: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    tools
        .iter()
        .filter_map(|t| {
            let f = &t["function"];
            Some((f["name"].as_str()?.to_string(), f.get("parameters").cloned().unwrap_or(serde_json::Value::Null)))
        })
        .collect()
}

/// A grammar built from tools, keeping each tool's schema as the grammar holds it (a missing
/// one is any object) to name the tool at fault when it does not compile.
fn tools_constraint(lark: String, schemas: &[(String, serde_json::Value)]) -> Constraint {
    let schemas = schemas.iter().map(|(_, s)| crate::constraint::compact_parameters(s)).collect();
    Constraint::Tools { lark, schemas }
}

impl Shaper {
    /// A shaper for output in `format` (none: no tool calls) offering `tools`. `forced`: the call
    /// the prompt already opened, and the prefix it ends with. `reasoning`: split `<think>`
    /// reasoning, starting inside it when `Some(true)` (the prompt opened it).
    pub fn new(
        format: Option<ToolFormat>,
        tools: Vec<String>,
        forced: Option<(&ForcedChoice, &str)>,
        reasoning: Option<bool>,
    ) -> Shaper {
        let parser = format.map(|f| match forced {
            Some((_, prefix)) => ToolCallParser::with_prefix(f, tools, prefix),
            None => ToolCallParser::new(f, tools),
        });
        let forced = forced.filter(|_| parser.is_some()).map(|(choice, _)| match choice {
            ForcedChoice::Function(f) => f.clone(),
            ForcedChoice::Required => String::new(),
        });
        Shaper { splitter: reasoning.map(ReasoningSplitter::new), parser, harmony: None, forced, cut_call: false }
    }

    /// A shaper for harmony output (gpt-oss) offering `tools`; `forced` as for [`Shaper::new`].
    pub fn harmony(tools: Vec<String>, forced: Option<(&ForcedChoice, &str)>) -> Shaper {
        let parser = HarmonyParser::new(tools, forced.map_or("", |(_, prefix)| prefix));
        let forced = forced.map(|(choice, _)| match choice {
            ForcedChoice::Function(f) => f.clone(),
            ForcedChoice::Required => String::new(),
        });
        Shaper { splitter: None, parser: None, harmony: Some(parser), forced, cut_call: false }
    }

    /// Renders a chat prompt for `engine` as `how` asks; `None` for a prompt that is not a chat.
    pub fn render(engine: &Engine, prompt: &Prompt, how: &Shaping) -> Result<Option<Rendered>> {
        let Prompt::Chat { messages, tools, add_generation_prompt, continue_final_message, extra } = prompt else {
            return Ok(None);
        };
        if messages.is_empty() {
            return Err(EngineError::invalid("messages", "must hold at least one message"));
        }
        let template = engine.chat_template_source().unwrap_or("");
        if harmony::template_is_harmony(template) {
            let chat = ChatInput {
                messages,
                tools: tools.as_deref(),
                add_generation_prompt: *add_generation_prompt,
                continue_final_message: *continue_final_message,
                extra: extra.as_ref(),
            };
            return Shaper::render_harmony(engine, &chat, how).map(Some);
        }
        let format = match tools {
            Some(_) => Some(ToolFormat::detect(template).ok_or_else(|| {
                EngineError::invalid(
                    if how.forced.is_some() { "tool_choice" } else { "tools" },
                    format!(
                        "model '{}' cannot call tools: its chat template has no tool-calling format",
                        engine.info().name
                    ),
                )
            })?),
            None if how.forced.is_some() => {
                return Err(EngineError::invalid("tool_choice", "a required tool call needs 'tools'"));
            }
            None => None,
        };
        let mut text = engine.render_chat(&ChatInput {
            messages,
            tools: tools.as_deref(),
            add_generation_prompt: *add_generation_prompt,
            continue_final_message: *continue_final_message,
            extra: extra.as_ref(),
        })?;
        // Reasoning models announce it in their template or with a `<think>` token.
        let reasons =
            ReasoningSplitter::template_supports(template) || engine.tokenizer().token_to_id("<think>").is_some();
        let reasoning = (how.separate_reasoning && reasons).then(|| ReasoningSplitter::prompt_opens_think(&text));
        let prefix = match (format, &how.forced) {
            (Some(f), Some(choice)) => Some(f.forced_prefix(choice)),
            _ => None,
        };
        if let Some(p) = &prefix {
            text.push_str(p);
        }
        let names = tools.as_deref().map(tool_names).unwrap_or_default();
        let forced = how.forced.as_ref().zip(prefix.as_deref());
        let shaper = Shaper::new(format, names, forced, reasoning);
        let constraint = match (format, &how.forced, tools) {
            (Some(f), Some(choice), Some(t)) => {
                let schemas = tool_schemas(t);
                f.forced_grammar(choice, &schemas).map(|lark| tools_constraint(lark, &schemas))
            }
            (Some(f), None, Some(t)) if !how.strict.is_empty() => {
                let schemas: Vec<(String, serde_json::Value)> = tool_schemas(t)
                    .into_iter()
                    .map(|(n, s)| {
                        let s = if how.strict.contains(&n) { s } else { serde_json::json!({"type": "object"}) };
                        (n, s)
                    })
                    .collect();
                let tok = engine.tokenizer();
                f.auto_grammar(&schemas, &|t| tok.special_token_id(t)).map(|lark| tools_constraint(lark, &schemas))
            }
            _ => None,
        };
        let keep_special_tokens = format.is_some_and(|f| f != ToolFormat::Hermes);
        Ok(Some(Rendered { text, keep_special_tokens, shaper, constraint }))
    }

    /// [`Shaper::render`] for a harmony template: its channels are always read (the markers are
    /// special tokens, kept for the parser), tools need no detection, and a forced call's
    /// arguments are generated under the function's schema. Strict tools under `auto` are not
    /// held to their schemas here (harmony's free channels have no grammar yet).
    fn render_harmony(engine: &Engine, chat: &ChatInput<'_>, how: &Shaping) -> Result<Rendered> {
        let tools = chat.tools;
        if tools.is_none() && how.forced.is_some() {
            return Err(EngineError::invalid("tool_choice", "a required tool call needs 'tools'"));
        }
        let mut text = engine.render_chat(chat)?;
        let prefix = how.forced.as_ref().map(harmony::forced_prefix);
        if let Some(p) = &prefix {
            text.push_str(p);
        }
        let names = tools.map(tool_names).unwrap_or_default();
        let shaper = Shaper::harmony(names, how.forced.as_ref().zip(prefix.as_deref()));
        let constraint = match (&how.forced, tools) {
            (Some(choice), Some(t)) => {
                let tok = engine.tokenizer();
                let schemas = tool_schemas(t);
                harmony::forced_grammar(choice, &schemas, &|m| tok.special_token_id(m))
                    .map(|lark| tools_constraint(lark, &schemas))
            }
            _ => None,
        };
        Ok(Rendered { text, keep_special_tokens: true, shaper, constraint })
    }

    /// Renders `req`'s prompt when it is a chat (it becomes the rendered text) and returns the
    /// shaper of its output; a plain shaper (text passes through) otherwise.
    pub fn prepare(engine: &Engine, req: &mut GenerateRequest, how: &Shaping) -> Result<Shaper> {
        match Shaper::render(engine, &req.prompt, how)? {
            Some(r) => {
                req.prompt = Prompt::Rendered(r.text);
                // Markers that are special tokens must reach the parser.
                req.keep_special_tokens |= r.keep_special_tokens;
                // A forced call is generated under its schema, so its arguments always validate
                // (over any response format: a forced call's answer has no text to format).
                if r.constraint.is_some() {
                    req.constraint = r.constraint;
                }
                Ok(r.shaper)
            }
            None => Ok(Shaper::default()),
        }
    }

    fn events(&mut self, events: Vec<ToolEvent>, out: &mut ShapedDelta) {
        for e in events {
            match e {
                // A forced call is never answered with plain text (checked at the end).
                ToolEvent::Text(t) if self.forced.is_none() => out.text.push_str(&t),
                ToolEvent::Text(_) | ToolEvent::CallEnd { .. } => {}
                ToolEvent::CallStart { index, id, name } => {
                    out.calls.push(CallDelta { index, id, name, arguments: String::new() })
                }
                ToolEvent::CallArgs { index, fragment } => match out.calls.last_mut().filter(|c| c.index == index) {
                    Some(c) => c.arguments.push_str(&fragment),
                    None => out.calls.push(CallDelta { index, arguments: fragment, ..Default::default() }),
                },
            }
        }
    }

    fn route(&mut self, content: String, out: &mut ShapedDelta) {
        match self.parser.as_mut() {
            Some(p) => {
                let ev = p.push(&content);
                self.events(ev, out);
            }
            None => out.text.push_str(&content),
        }
    }

    /// Whether the output is inside the model's reasoning. A token is a reasoning token when
    /// this holds before or after it is pushed: the tokens that open and close the reasoning
    /// count, as OpenAI's `reasoning_tokens` do.
    pub fn in_reasoning(&self) -> bool {
        self.harmony.as_ref().is_some_and(|h| h.in_reasoning())
            || self.splitter.as_ref().is_some_and(|s| s.in_reasoning())
    }

    /// Shapes one piece of generated text.
    pub fn push(&mut self, text: &str) -> ShapedDelta {
        let mut out = ShapedDelta::default();
        if let Some(h) = self.harmony.as_mut() {
            let (reasoning, events) = h.push(text);
            out.reasoning = reasoning;
            self.events(events, &mut out);
            return out;
        }
        let content = match self.splitter.as_mut() {
            Some(s) => {
                let (reasoning, content) = s.push(text);
                out.reasoning = reasoning;
                content
            }
            None => text.to_string(),
        };
        self.route(content, &mut out);
        out
    }

    /// Flushes what was held back; fails when a forced tool call did not come out whole.
    pub fn finish(&mut self) -> Result<ShapedDelta> {
        self.finish_as(false)
    }

    /// [`Shaper::finish`] for an output the engine cut short (`max_tokens`, a stop string): a
    /// call in progress stays a call with the arguments it got (as its deltas streamed them)
    /// rather than coming back as text too, and a forced call cut short is no failure — the
    /// finish reason says what happened.
    pub fn finish_cut(&mut self) -> Result<ShapedDelta> {
        self.finish_as(true)
    }

    /// Whether [`Shaper::finish_cut`] ended a call before it was complete: the answer's finish
    /// reason is then the cut's, never "tool calls".
    pub fn cut_call(&self) -> bool {
        self.cut_call
    }

    fn finish_as(&mut self, cut: bool) -> Result<ShapedDelta> {
        let mut out = ShapedDelta::default();
        if let Some(h) = self.harmony.as_mut() {
            // A cut while a call's arguments were being read leaves that call unfinished: the
            // answer's finish is the cut's, as for the other formats.
            self.cut_call = cut && h.in_call();
            let (reasoning, events) = h.finish();
            out.reasoning = reasoning;
            self.events(events, &mut out);
            let calls = self.calls();
            if let Some(f) = &self.forced
                && !cut
                && !calls.iter().any(|c| f.is_empty() || c.name == *f)
            {
                return Err(EngineError::ToolCallFailed(
                    "the model did not produce a valid tool call although tool_choice required one".into(),
                ));
            }
            return Ok(out);
        }
        if let Some(s) = self.splitter.as_mut() {
            let (reasoning, content) = s.finish();
            out.reasoning = reasoning;
            self.route(content, &mut out);
        }
        if let Some(p) = self.parser.as_mut() {
            let ev = if cut {
                let (ev, cut_call) = p.finish_cut();
                self.cut_call = cut_call;
                ev
            } else {
                p.finish()
            };
            self.events(ev, &mut out);
        }
        if let (Some(f), Some(p), false) = (&self.forced, &self.parser, cut) {
            let ok = !p.malformed() && p.calls().iter().any(|c| f.is_empty() || c.name == *f);
            if !ok {
                return Err(EngineError::ToolCallFailed(
                    "the model did not produce a valid tool call although tool_choice required one".into(),
                ));
            }
        }
        Ok(out)
    }

    /// Whether the answer called tools.
    pub fn called_tools(&self) -> bool {
        self.parser.as_ref().is_some_and(|p| !p.calls().is_empty() || p.saw_calls())
            || self.harmony.as_ref().is_some_and(|h| !h.calls().is_empty())
    }

    /// Whether a call in the answer was malformed (and given back as text).
    pub fn malformed(&self) -> bool {
        self.parser.as_ref().is_some_and(ToolCallParser::malformed)
            || self.harmony.as_ref().is_some_and(HarmonyParser::malformed)
    }

    /// The completed calls so far.
    pub fn calls(&self) -> &[super::ParsedCall] {
        match (&self.parser, &self.harmony) {
            (Some(p), _) => p.calls(),
            (None, Some(h)) => h.calls(),
            (None, None) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shaper: &mut Shaper, pieces: &[&str]) -> (ShapedDelta, Result<ShapedDelta>) {
        let mut all = ShapedDelta::default();
        for p in pieces {
            let d = shaper.push(p);
            all.text.push_str(&d.text);
            all.reasoning.push_str(&d.reasoning);
            all.calls.extend(d.calls);
        }
        (all, shaper.finish())
    }

    #[test]
    fn plain_text_passes_through() {
        let (d, end) = run(&mut Shaper::default(), &["Hello", " <tool_call> is just text"]);
        assert_eq!(d.text, "Hello <tool_call> is just text");
        assert!(end.unwrap().is_empty());
    }

    #[test]
    fn reasoning_then_a_call() {
        let tools = vec!["get_time".to_string()];
        let mut s = Shaper::new(Some(ToolFormat::Hermes), tools, None, Some(false));
        let (d, end) = run(
            &mut s,
            &["<think>why", "</think>\n\n<tool_call>\n{\"name\": \"get_time\", ", "\"arguments\": {}}\n</tool_call>"],
        );
        let end = end.unwrap();
        assert_eq!(d.reasoning + &end.reasoning, "why");
        assert_eq!((d.text.trim(), end.text.trim()), ("", ""));
        let calls: Vec<CallDelta> = d.calls.into_iter().chain(end.calls).collect();
        assert_eq!((calls[0].index, calls[0].name.as_str()), (0, "get_time"));
        assert_eq!(calls.iter().map(|c| c.arguments.as_str()).collect::<String>(), "{}");
        assert!(s.called_tools() && !s.malformed());
    }

    #[test]
    fn a_call_cut_short_stays_one_partial_call() {
        let mut s = Shaper::new(Some(ToolFormat::Hermes), vec!["get_time".into()], None, None);
        for piece in ["<tool_call>\n{\"name\": \"get_time\", ", "\"arguments\": {\"tz\": \"Eu"] {
            let d = s.push(piece);
            assert_eq!(d.text, "");
        }
        let end = s.finish_cut().unwrap();
        assert_eq!(end.text, "", "the markup is not given back as text beside the call");
        assert!(s.cut_call() && !s.malformed());
        assert_eq!((s.calls()[0].name.as_str(), s.calls()[0].arguments.as_str()), ("get_time", "{\"tz\": \"Eu"));
        // Cut after the marker, before the name: no call, and the markup is not text either.
        let mut s = Shaper::new(Some(ToolFormat::Hermes), vec!["get_time".into()], None, None);
        let d = s.push("Let me see. <tool_call>\n{\"na");
        let end = s.finish_cut().unwrap();
        assert_eq!(d.text + &end.text, "Let me see. ");
        assert!(!s.cut_call() && s.calls().is_empty());
        // Bare JSON with no marker (Llama 3) may have been text: it comes back.
        let mut s = Shaper::new(Some(ToolFormat::Llama3), vec!["get_time".into()], None, None);
        let d = s.push("{\"na");
        let end = s.finish_cut().unwrap();
        assert_eq!(d.text + &end.text, "{\"na");
        // A forced call cut short is no failure: the finish reason says what happened.
        let choice = ForcedChoice::Function("get_time".into());
        let prefix = ToolFormat::Hermes.forced_prefix(&choice);
        let mut s = Shaper::new(Some(ToolFormat::Hermes), vec!["get_time".into()], Some((&choice, &prefix)), None);
        s.push("{\"tz");
        assert!(s.finish_cut().is_ok());
    }

    #[test]
    fn a_forced_call_that_does_not_come_is_an_error_and_shows_no_text() {
        let choice = ForcedChoice::Function("get_time".into());
        let prefix = ToolFormat::Hermes.forced_prefix(&choice);
        let mut s = Shaper::new(Some(ToolFormat::Hermes), vec!["get_time".into()], Some((&choice, &prefix)), None);
        let (d, end) = run(&mut s, &["I would rather chat."]);
        assert_eq!(d.text, "", "a forced call is never answered with text");
        assert!(matches!(end, Err(EngineError::ToolCallFailed(_))), "{end:?}");
    }
}
