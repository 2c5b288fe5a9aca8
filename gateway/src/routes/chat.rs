//! `POST /v1/chat/completions`: JSON or SSE. Stream invariants clients rely on: the first chunk
//! carries the role, every chunk the same id, `finish_reason` only in the last choice chunk, a
//! usage chunk with empty `choices` only when `stream_options.include_usage` asks, then
//! `data: [DONE]`.

use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use super::generation::{Endpoint, Gathered};
use super::output;
use super::stream::{Chunk, Chunker};
use crate::convert::{self, ChatOptions};
use crate::dto::request::ChatCompletionRequest;
use crate::dto::response::*;
use crate::error::ApiError;

/// `POST /v1/chat/completions` through the shared generation route.
pub struct Chat;

impl Endpoint for Chat {
    type Body = ChatCompletionRequest;
    type Options = ChatOptions;
    type Chunker = ChatChunker;
    type Answer = ChatCompletion;

    fn convert(body: &ChatCompletionRequest, request_id: &str) -> Result<(v1::GenerateRequest, ChatOptions), ApiError> {
        convert::chat(body, request_id)
    }

    fn field(body: &ChatCompletionRequest, daemon_param: &str) -> Option<&'static str> {
        daemon_param.starts_with("constraint").then(|| convert::constraint_field(&body.grammar))
    }

    fn streams(options: &ChatOptions) -> bool {
        options.stream
    }

    fn chunker(request_id: &str, opts: ChatOptions) -> ChatChunker {
        ChatChunker {
            id: format!("chatcmpl-{request_id}"),
            created: super::now(),
            model: opts.model.clone(),
            opts,
            calls_seen: 0,
        }
    }

    fn answer(request_id: &str, opts: ChatOptions, g: Gathered) -> ChatCompletion {
        let mut calls: Vec<ToolCall> = g
            .calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                kind: "function",
                function: FunctionCall { name: c.name, arguments: c.arguments },
            })
            .collect();
        if opts.single_tool_call {
            calls.truncate(1);
        }
        ChatCompletion {
            id: format!("chatcmpl-{request_id}"),
            object: "chat.completion",
            created: super::now(),
            model: output::reported_model(&opts.model, g.model),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: if g.text.is_empty() && !calls.is_empty() { None } else { Some(g.text) },
                    reasoning_content: (!g.reasoning.is_empty()).then_some(g.reasoning),
                    tool_calls: calls,
                },
                logprobs: opts.logprobs.then(|| output::chat_logprobs(&g.logprobs)),
                finish_reason: Some(output::finish_reason(&g.finished)),
            }],
            usage: output::usage(&g.finished),
            system_fingerprint: None,
        }
    }
}

/// The chunks of a streamed chat completion.
pub struct ChatChunker {
    id: String,
    created: u64,
    model: String,
    opts: ChatOptions,
    calls_seen: u32,
}

impl ChatChunker {
    fn chunk(&self, delta: Delta, logprobs: Option<ChoiceLogprobs>, finish: Option<&'static str>) -> String {
        let c = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs, finish_reason: finish }],
            // OpenAI: with include_usage, every chunk carries `usage`, null until the last.
            usage: self.opts.include_usage.then_some(None),
            system_fingerprint: None,
        };
        serde_json::to_string(&c).expect("chunks serialize")
    }
}

impl Chunker for ChatChunker {
    fn on_event(&mut self, event: Ev) -> Vec<Chunk> {
        self.payloads(event).into_iter().map(Chunk::data).collect()
    }
}

impl ChatChunker {
    fn payloads(&mut self, event: Ev) -> Vec<String> {
        match event {
            Ev::Started(s) => {
                self.model = output::reported_model(&self.model, s.model);
                vec![self.chunk(Delta { role: Some("assistant"), ..Default::default() }, None, None)]
            }
            Ev::Delta(d) => {
                let mut out = Vec::new();
                if !d.reasoning_text.is_empty() {
                    out.push(self.chunk(
                        Delta { reasoning_content: Some(d.reasoning_text), ..Default::default() },
                        None,
                        None,
                    ));
                }
                let logprobs =
                    (self.opts.logprobs && !d.logprobs.is_empty()).then(|| output::chat_logprobs(&d.logprobs));
                if !d.text.is_empty() || logprobs.is_some() {
                    out.push(self.chunk(Delta { content: Some(d.text), ..Default::default() }, logprobs, None));
                }
                let calls: Vec<ToolCallDelta> = d
                    .tool_calls
                    .into_iter()
                    .filter(|c| !(self.opts.single_tool_call && c.index > 0))
                    .map(|c| {
                        let first = !c.id.is_empty();
                        if first {
                            self.calls_seen += 1;
                        }
                        ToolCallDelta {
                            index: c.index,
                            id: first.then_some(c.id),
                            kind: first.then_some("function"),
                            function: FunctionDelta {
                                name: (!c.name.is_empty()).then_some(c.name),
                                arguments: c.arguments,
                            },
                        }
                    })
                    .collect();
                if !calls.is_empty() {
                    out.push(self.chunk(Delta { tool_calls: calls, ..Default::default() }, None, None));
                }
                out
            }
            Ev::Finished(f) => {
                let mut out = vec![self.chunk(Delta::default(), None, Some(output::finish_reason(&f)))];
                if self.opts.include_usage {
                    let c = ChatCompletionChunk {
                        id: self.id.clone(),
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: self.model.clone(),
                        choices: vec![],
                        usage: Some(Some(output::usage(&f))),
                        system_fingerprint: None,
                    };
                    out.push(serde_json::to_string(&c).expect("chunks serialize"));
                }
                out
            }
        }
    }
}
