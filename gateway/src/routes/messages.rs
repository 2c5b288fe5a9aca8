//! `POST /v1/messages` (Anthropic's Messages API, JSON or its typed SSE events) through the shared
//! generation route, and `POST /v1/messages/count_tokens`. Stream invariants the official SDK
//! relies on: `message_start` first (with the input tokens), then per content block
//! `content_block_start`, its deltas (`thinking_delta`, `text_delta`, `input_json_delta`) and
//! `content_block_stop`, blocks numbered from 0 and never interleaved; then `message_delta` with
//! the stop reason and output tokens, and `message_stop`. An error mid-stream is an `error` event.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use super::generation::{Endpoint, Gathered};
use super::output;
use super::stream::{Chunk, Chunker};
use crate::anthropic::{self, Message, MessagesOptions, MessagesRequest, Usage};
use crate::error::ApiError;
use crate::{AppState, LimitedBody};

/// `POST /v1/messages` through the shared generation route.
pub struct Messages;

impl Endpoint for Messages {
    type Body = MessagesRequest;
    type Options = MessagesOptions;
    type Chunker = MessageChunker;
    type Answer = Message;

    fn convert(body: &MessagesRequest, request_id: &str) -> Result<(v1::GenerateRequest, MessagesOptions), ApiError> {
        anthropic::convert(body, request_id)
    }

    fn streams(options: &MessagesOptions) -> bool {
        options.stream
    }

    fn chunker(request_id: &str, opts: MessagesOptions) -> MessageChunker {
        MessageChunker { id: format!("msg_{request_id}"), opts, open: None, blocks: 0 }
    }

    fn answer(request_id: &str, opts: MessagesOptions, g: Gathered) -> Message {
        let mut content = Vec::new();
        if opts.thinking && !g.reasoning.is_empty() {
            content.push(json!({"type": "thinking", "thinking": g.reasoning, "signature": ""}));
        }
        // As the stream has it: no empty text block (Anthropic refuses one sent back).
        if !g.text.is_empty() {
            content.push(json!({"type": "text", "text": g.text}));
        }
        for c in g.calls {
            // Cut short by max_tokens, the input is what it was becoming, as the SDK reads a stream.
            let input = crate::convert::tools::partial_object(&c.arguments);
            content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
        }
        let usage = output::usage(&g.finished);
        let (stop_reason, stop_sequence) = anthropic::stop_reason(&g.finished);
        Message {
            id: format!("msg_{request_id}"),
            kind: "message",
            role: "assistant",
            model: output::reported_model(&opts.model, g.model),
            content,
            stop_reason: Some(stop_reason),
            stop_sequence,
            usage: Usage::new(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, usage.completion_tokens),
        }
    }

    fn error_response(e: ApiError) -> Response {
        anthropic::error_response(e)
    }
}

/// The kind of the content block being streamed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool,
}

/// The typed events of a streamed message.
pub struct MessageChunker {
    id: String,
    opts: MessagesOptions,
    /// The block open now, if any.
    open: Option<Block>,
    /// Blocks started so far (the next one's index).
    blocks: usize,
}

impl MessageChunker {
    fn event(name: &'static str, v: Value) -> Chunk {
        Chunk::named(name, v.to_string())
    }

    fn close(&mut self, out: &mut Vec<Chunk>) {
        if self.open.take().is_some() {
            out.push(Self::event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.blocks - 1}),
            ));
        }
    }

    /// Makes `kind` the open block (a tool block is always new), starting it with `start`.
    fn open(&mut self, kind: Block, start: Value, out: &mut Vec<Chunk>) {
        if self.open == Some(kind) && kind != Block::Tool {
            return;
        }
        self.close(out);
        out.push(Self::event(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.blocks, "content_block": start}),
        ));
        self.open = Some(kind);
        self.blocks += 1;
    }

    fn delta(&self, delta: Value) -> Chunk {
        Self::event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}),
        )
    }
}

impl Chunker for MessageChunker {
    fn on_event(&mut self, event: Ev) -> Vec<Chunk> {
        let mut out = Vec::new();
        match event {
            Ev::Started(s) => {
                let model = output::reported_model(&self.opts.model, s.model);
                out.push(Self::event(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": self.id, "type": "message", "role": "assistant",
                        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": Usage::new(s.prompt_tokens, s.cached_tokens, 0)}}),
                ));
            }
            Ev::Delta(d) => {
                if self.opts.thinking && !d.reasoning_text.is_empty() {
                    self.open(Block::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}), &mut out);
                    out.push(self.delta(json!({"type": "thinking_delta", "thinking": d.reasoning_text})));
                }
                if !d.text.is_empty() {
                    self.open(Block::Text, json!({"type": "text", "text": ""}), &mut out);
                    out.push(self.delta(json!({"type": "text_delta", "text": d.text})));
                }
                for c in d.tool_calls {
                    if !c.id.is_empty() {
                        self.open(
                            Block::Tool,
                            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
                            &mut out,
                        );
                    }
                    if !c.arguments.is_empty() && self.open == Some(Block::Tool) {
                        out.push(self.delta(json!({"type": "input_json_delta", "partial_json": c.arguments})));
                    }
                }
            }
            Ev::Finished(f) => {
                self.close(&mut out);
                let usage = output::usage(&f);
                let (stop_reason, stop_sequence) = anthropic::stop_reason(&f);
                out.push(Self::event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                        "usage": {"output_tokens": usage.completion_tokens}}),
                ));
                out.push(Self::event("message_stop", json!({"type": "message_stop"})));
            }
        }
        out
    }

    fn error(&self, e: &ApiError) -> Chunk {
        Chunk::named("error", anthropic::error_body(e).to_string())
    }

    fn done(&self) -> Option<Chunk> {
        None
    }
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens"}` of the prompt a message request would use.
pub async fn count_tokens(State(state): State<Arc<AppState>>, body: LimitedBody) -> Response {
    let run = async {
        let dto: MessagesRequest = body.parse().await?;
        let req = anthropic::count(&dto)?;
        let limit = state.config.request_timeout;
        match tokio::time::timeout(limit, state.models().tokenize(req)).await {
            Ok(r) => Ok::<_, ApiError>(r?.into_inner()),
            Err(_) => Err(ApiError::timeout(limit)),
        }
    };
    match run.await {
        Ok(r) => Json(json!({"input_tokens": r.count})).into_response(),
        Err(e) => anthropic::error_response(e),
    }
}
