//! `POST /v1/chat/completions`: JSON or SSE. Stream invariants clients rely on: the first chunk
//! carries the role, every chunk the same id, `finish_reason` only in the last choice chunk, a
//! usage chunk with empty `choices` only when `stream_options.include_usage` asks, then
//! `data: [DONE]`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use zeta_proto::v1::generate_event::Event as Ev;

use super::stream::{self, Chunker};
use crate::convert::{self, ChatOptions};
use crate::dto::request::ChatCompletionRequest;
use crate::dto::response::*;
use crate::error::ApiError;
use crate::{AppState, LimitedBody, RequestId};

/// The handler.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    body: LimitedBody,
) -> Response {
    match run(&state, &id.0, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(state: &AppState, request_id: &str, body: LimitedBody) -> Result<Response, ApiError> {
    let dto: ChatCompletionRequest = body.parse().await?;
    let (req, opts) = convert::chat(&dto, request_id)?;
    let id = format!("chatcmpl-{request_id}");
    if opts.stream {
        let chunker = ChatChunker { id, created: super::now(), model: opts.model.clone(), opts, calls_seen: 0 };
        return stream::stream(state, req, chunker).await;
    }
    let g = stream::gather(state, req).await?;
    let f = g.finished.as_ref().expect("gather checks");
    let mut calls: Vec<ToolCall> = g
        .calls
        .into_iter()
        .map(|(id, name, arguments)| ToolCall { id, kind: "function", function: FunctionCall { name, arguments } })
        .collect();
    if opts.single_tool_call {
        calls.truncate(1);
    }
    let finish = stream::finish_reason(f);
    let body = ChatCompletion {
        id,
        object: "chat.completion",
        created: super::now(),
        model: stream::reported_model(&opts.model, g.model),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: if g.text.is_empty() && !calls.is_empty() { None } else { Some(g.text) },
                reasoning_content: (!g.reasoning.is_empty()).then_some(g.reasoning),
                tool_calls: calls,
            },
            logprobs: opts.logprobs.then(|| stream::chat_logprobs(&g.logprobs)),
            finish_reason: Some(finish),
        }],
        usage: stream::usage(f),
        system_fingerprint: None,
    };
    Ok(Json(body).into_response())
}

struct ChatChunker {
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
            usage: None,
            system_fingerprint: None,
        };
        serde_json::to_string(&c).expect("chunks serialize")
    }
}

impl Chunker for ChatChunker {
    fn on_event(&mut self, event: Ev) -> Vec<String> {
        match event {
            Ev::Started(s) => {
                self.model = stream::reported_model(&self.model, s.model);
                vec![self.chunk(
                    Delta { role: Some("assistant"), content: Some(String::new()), ..Default::default() },
                    None,
                    None,
                )]
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
                    (self.opts.logprobs && !d.logprobs.is_empty()).then(|| stream::chat_logprobs(&d.logprobs));
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
                let mut out = vec![self.chunk(Delta::default(), None, Some(stream::finish_reason(&f)))];
                if self.opts.include_usage {
                    let c = ChatCompletionChunk {
                        id: self.id.clone(),
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: self.model.clone(),
                        choices: vec![],
                        usage: Some(stream::usage(&f)),
                        system_fingerprint: None,
                    };
                    out.push(serde_json::to_string(&c).expect("chunks serialize"));
                }
                out
            }
        }
    }
}
