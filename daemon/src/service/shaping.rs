//! Shaping a chat generation's output: the prompt is rendered here (so a forced tool call can be
//! started by appending its opening to the answer), and the streamed text is split into
//! reasoning (`<think>…</think>`), content and tool-call fragments, in the model family's own
//! tool-call format. Direct gRPC clients get the same structured deltas as the gateway.

use zeta_engine::tools::{ForcedChoice, ReasoningSplitter, ToolCallParser, ToolEvent, ToolFormat};
use zeta_engine::{ChatInput, Engine, GenerateRequest, Prompt};
use zeta_proto::v1;

use crate::error::DaemonError;

/// Per-request output state.
#[derive(Default)]
pub struct Shaper {
    splitter: Option<ReasoningSplitter>,
    parser: Option<ToolCallParser>,
    forced: Option<String>,
}

/// One shaped piece of output.
#[derive(Default)]
pub struct Shaped {
    /// Answer text.
    pub text: String,
    /// Reasoning text.
    pub reasoning: String,
    /// Tool-call fragments.
    pub calls: Vec<v1::ToolCallDelta>,
}

impl Shaper {
    /// Renders a chat prompt for `engine` (replacing `req.prompt`) and prepares the output split.
    pub fn prepare(
        req: &mut GenerateRequest,
        wire: &v1::GenerateRequest,
        engine: &Engine,
    ) -> Result<Shaper, DaemonError> {
        let Prompt::Chat { messages, tools, add_generation_prompt, extra } = &req.prompt else {
            return Ok(Shaper::default());
        };
        let template = engine.chat_template_source().unwrap_or("");
        let mode = wire.tool_choice.as_ref().map(|c| (c.mode, c.function.as_str()));
        let forced = match mode {
            Some((_, f)) if !f.is_empty() => Some(ForcedChoice::Function(f.to_string())),
            Some((m, _)) if m == v1::tool_choice::Mode::Required as i32 => Some(ForcedChoice::Required),
            _ => None,
        };
        let format = match tools {
            Some(_) => Some(ToolFormat::detect(template).ok_or_else(|| {
                DaemonError::invalid(
                    if forced.is_some() { "tool_choice" } else { "tools" },
                    format!(
                        "model '{}' cannot call tools: its chat template has no tool-calling format",
                        engine.info().name
                    ),
                )
            })?),
            None if forced.is_some() => {
                return Err(DaemonError::invalid("tool_choice", "a required tool call needs 'tools'"));
            }
            None => None,
        };
        let mut text = engine.render_chat(&ChatInput {
            messages,
            tools: tools.as_deref(),
            add_generation_prompt: *add_generation_prompt,
            extra: extra.as_ref(),
        })?;
        // Reasoning models announce it in their template or with a `<think>` token.
        let reasons =
            ReasoningSplitter::template_supports(template) || engine.tokenizer().token_to_id("<think>").is_some();
        let splitter = (wire.separate_reasoning && reasons)
            .then(|| ReasoningSplitter::new(ReasoningSplitter::prompt_opens_think(&text)));
        let mut shaper = Shaper { splitter, parser: None, forced: None };
        if let Some(format) = format {
            let names: Vec<String> = wire.tools.iter().map(|t| t.name.clone()).collect();
            shaper.parser = Some(match &forced {
                Some(choice) => {
                    let prefix = format.forced_prefix(choice);
                    text.push_str(&prefix);
                    shaper.forced = Some(match choice {
                        ForcedChoice::Function(f) => f.clone(),
                        ForcedChoice::Required => String::new(),
                    });
                    ToolCallParser::with_prefix(format, names, &prefix)
                }
                None => ToolCallParser::new(format, names),
            });
            // Some vocabularies make the markers special tokens; they must reach the parser.
            req.keep_special_tokens = format != ToolFormat::Hermes;
        }
        req.prompt = Prompt::Rendered(text);
        Ok(shaper)
    }

    fn events(&mut self, events: Vec<ToolEvent>, out: &mut Shaped) {
        for e in events {
            match e {
                ToolEvent::Text(t) => {
                    // A forced call is never answered with plain text (checked at the end).
                    if self.forced.is_none() {
                        out.text.push_str(&t);
                    }
                }
                ToolEvent::CallStart { index, id, name } => {
                    out.calls.push(v1::ToolCallDelta { index: index as u32, id, name, arguments: String::new() })
                }
                ToolEvent::CallArgs { index, fragment } => {
                    match out.calls.last_mut().filter(|c| c.index == index as u32) {
                        Some(c) => c.arguments.push_str(&fragment),
                        None => out.calls.push(v1::ToolCallDelta {
                            index: index as u32,
                            arguments: fragment,
                            ..Default::default()
                        }),
                    }
                }
                ToolEvent::CallEnd { .. } => {}
            }
        }
    }

    fn route(&mut self, content: String, out: &mut Shaped) {
        match self.parser.as_mut() {
            Some(p) => {
                let ev = p.push(&content);
                self.events(ev, out);
            }
            None => out.text.push_str(&content),
        }
    }

    /// Shapes one piece of generated text.
    pub fn push(&mut self, text: &str) -> Shaped {
        let mut out = Shaped::default();
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

    /// Flushes what was held back; errors when a forced tool call did not come out whole.
    pub fn finish(&mut self) -> Result<Shaped, DaemonError> {
        let mut out = Shaped::default();
        if let Some(s) = self.splitter.as_mut() {
            let (reasoning, content) = s.finish();
            out.reasoning = reasoning;
            self.route(content, &mut out);
        }
        if let Some(p) = self.parser.as_mut() {
            let ev = p.finish();
            self.events(ev, &mut out);
        }
        if let (Some(f), Some(p)) = (&self.forced, &self.parser) {
            let ok = !p.malformed() && p.calls().iter().any(|c| f.is_empty() || c.name == *f);
            if !ok {
                return Err(DaemonError::Internal(
                    "the model did not produce a valid tool call although tool_choice required one".into(),
                ));
            }
        }
        Ok(out)
    }

    /// Whether the answer called tools.
    pub fn called_tools(&self) -> bool {
        self.parser.as_ref().is_some_and(|p| !p.calls().is_empty() || p.saw_calls())
    }
}
