//! `POST /v1/responses` (OpenAI's Responses API, JSON or its typed SSE events) through the shared
//! generation route. Stream invariants the official SDK relies on: every event names its type
//! (as the SSE event and in `type`) and carries a rising `sequence_number`; `response.created`
//! and `response.in_progress` come first; each output item is `response.output_item.added`, its
//! parts and deltas, their `.done` events and `response.output_item.done`, items numbered from 0
//! and never interleaved; `response.completed` (or `response.incomplete` at the token limit)
//! ends the stream with the whole response. An error mid-stream is an `error` event.

use std::cell::Cell;

use serde_json::{Value, json};
use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use super::generation::{Endpoint, Gathered};
use super::output;
use super::stream::{Chunk, Chunker};
use crate::error::ApiError;
use crate::responses::{
    self, ResponsesOptions, ResponsesRequest, call_item, final_status, message_item, reasoning_item, response_object,
};

/// `POST /v1/responses` through the shared generation route.
pub struct Responses;

/// An output item's id: its kind's prefix, the request and its place in the output.
fn item_id(prefix: &str, request_id: &str, index: usize) -> String {
    format!("{prefix}_{request_id}_{index}")
}

impl Endpoint for Responses {
    type Body = ResponsesRequest;
    type Options = ResponsesOptions;
    type Chunker = ResponseChunker;
    type Answer = Value;

    fn field(_: &ResponsesRequest, daemon_param: &str) -> Option<&'static str> {
        if daemon_param.starts_with("constraint") {
            Some("text.format")
        } else if daemon_param.starts_with("messages") {
            Some("input")
        } else {
            None
        }
    }

    fn convert(body: &ResponsesRequest, request_id: &str) -> Result<(v1::GenerateRequest, ResponsesOptions), ApiError> {
        responses::convert(body, request_id)
    }

    fn streams(options: &ResponsesOptions) -> bool {
        options.stream
    }

    fn chunker(request_id: &str, opts: ResponsesOptions) -> ResponseChunker {
        ResponseChunker {
            request_id: request_id.into(),
            opts,
            model: String::new(),
            seq: Cell::new(0),
            open: None,
            output: Vec::new(),
        }
    }

    fn answer(request_id: &str, opts: ResponsesOptions, g: Gathered) -> Value {
        let mut items = Vec::new();
        if opts.summary && !g.reasoning.is_empty() {
            items.push(reasoning_item(&item_id("rs", request_id, items.len()), &g.reasoning));
        }
        // As the stream has it: an empty message only for an answer with nothing else.
        if !g.text.is_empty() || (g.calls.is_empty() && items.is_empty()) {
            items.push(message_item(&item_id("msg", request_id, items.len()), "completed", Some(&g.text)));
        }
        let keep = if opts.single_tool_call { 1 } else { usize::MAX };
        for c in g.calls.into_iter().take(keep) {
            items.push(call_item(&item_id("fc", request_id, items.len()), "completed", &c.id, &c.name, &c.arguments));
        }
        let model = output::reported_model(&opts.model, g.model);
        let status = final_status(&g.finished);
        // The item the limit cut short is incomplete too, as OpenAI marks it.
        if let Some(last) = items.last_mut().and_then(Value::as_object_mut)
            && last.contains_key("status")
        {
            last.insert("status".into(), json!(status));
        }
        response_object(&format!("resp_{request_id}"), &opts, &model, status, items, Some(&g.finished))
    }
}

/// The output item being streamed, with what it has gathered so far.
enum Open {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Call { id: String, call_id: String, name: String, arguments: String },
}

/// The typed events of a streamed response.
pub struct ResponseChunker {
    request_id: String,
    opts: ResponsesOptions,
    model: String,
    /// The next event's sequence number (an error event takes one too, from `&self`).
    seq: Cell<u64>,
    open: Option<Open>,
    /// The finished output items, for the final response.
    output: Vec<Value>,
}

impl ResponseChunker {
    fn event(&self, kind: &'static str, v: Value) -> Chunk {
        Self::stamp(&self.seq, kind, v)
    }

    /// Names the event and gives it the next sequence number.
    fn stamp(seq: &Cell<u64>, kind: &'static str, mut v: Value) -> Chunk {
        let n = seq.get();
        seq.set(n + 1);
        let obj = v.as_object_mut().expect("an event is an object");
        obj.insert("type".into(), json!(kind));
        obj.insert("sequence_number".into(), json!(n));
        Chunk::named(kind, v.to_string())
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn close(&mut self, out: &mut Vec<Chunk>) {
        self.close_as(out, "completed");
    }

    /// Ends the open item with `status` (`incomplete` for the one the token limit cut short).
    fn close_as(&mut self, out: &mut Vec<Chunk>, status: &'static str) {
        let Some(open) = self.open.take() else { return };
        let i = self.index();
        let item = match open {
            Open::Reasoning { id, text } => {
                let part = json!({"type": "summary_text", "text": text});
                let at = json!({"item_id": id, "output_index": i, "summary_index": 0});
                out.push(self.event("response.reasoning_summary_text.done", merge(&at, json!({"text": text}))));
                out.push(self.event("response.reasoning_summary_part.done", merge(&at, json!({"part": part}))));
                reasoning_item(&id, &text)
            }
            Open::Message { id, text } => {
                let at = json!({"item_id": id, "output_index": i, "content_index": 0});
                out.push(self.event("response.output_text.done", merge(&at, json!({"text": text, "logprobs": []}))));
                let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                out.push(self.event("response.content_part.done", merge(&at, json!({"part": part}))));
                message_item(&id, status, Some(&text))
            }
            Open::Call { id, call_id, name, arguments } => {
                out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": i, "name": name, "arguments": arguments}),
                ));
                call_item(&id, status, &call_id, &name, &arguments)
            }
        };
        out.push(self.event("response.output_item.done", json!({"output_index": i, "item": item})));
        self.output.push(item);
    }

    fn open_reasoning(&mut self, out: &mut Vec<Chunk>) {
        if matches!(self.open, Some(Open::Reasoning { .. })) {
            return;
        }
        self.close(out);
        let i = self.index();
        let id = item_id("rs", &self.request_id, i);
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": i, "item": {"type": "reasoning", "id": id, "summary": []}}),
        ));
        out.push(self.event(
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": i, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
        ));
        self.open = Some(Open::Reasoning { id, text: String::new() });
    }

    fn open_message(&mut self, out: &mut Vec<Chunk>) {
        if matches!(self.open, Some(Open::Message { .. })) {
            return;
        }
        self.close(out);
        let i = self.index();
        let id = item_id("msg", &self.request_id, i);
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": i, "item": message_item(&id, "in_progress", None)}),
        ));
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": i, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
        ));
        self.open = Some(Open::Message { id, text: String::new() });
    }

    fn response(&self, status: &str, output: Vec<Value>, finished: Option<&v1::Finished>) -> Value {
        response_object(&format!("resp_{}", self.request_id), &self.opts, &self.model, status, output, finished)
    }
}

/// `a`'s fields with `b`'s added.
fn merge(a: &Value, b: Value) -> Value {
    let mut v = a.clone();
    if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), b) {
        o.extend(extra);
    }
    v
}

impl Chunker for ResponseChunker {
    fn on_event(&mut self, event: Ev) -> Vec<Chunk> {
        let mut out = Vec::new();
        match event {
            Ev::Started(s) => {
                self.model = output::reported_model(&self.opts.model, s.model);
                let r = self.response("in_progress", vec![], None);
                out.push(self.event("response.created", json!({"response": r})));
                out.push(self.event("response.in_progress", json!({"response": r})));
            }
            Ev::Delta(d) => {
                if self.opts.summary && !d.reasoning_text.is_empty() {
                    self.open_reasoning(&mut out);
                    if let Some(Open::Reasoning { id, text }) = &mut self.open {
                        text.push_str(&d.reasoning_text);
                        let v = json!({"item_id": id, "output_index": self.output.len(), "summary_index": 0,
                            "delta": d.reasoning_text});
                        out.push(Self::stamp(&self.seq, "response.reasoning_summary_text.delta", v));
                    }
                }
                if !d.text.is_empty() {
                    self.open_message(&mut out);
                    if let Some(Open::Message { id, text }) = &mut self.open {
                        text.push_str(&d.text);
                        let v = json!({"item_id": id, "output_index": self.output.len(), "content_index": 0,
                            "delta": d.text, "logprobs": []});
                        out.push(Self::stamp(&self.seq, "response.output_text.delta", v));
                    }
                }
                for c in d.tool_calls {
                    if self.opts.single_tool_call && c.index > 0 {
                        continue;
                    }
                    if !c.id.is_empty() {
                        self.close(&mut out);
                        let i = self.index();
                        let id = item_id("fc", &self.request_id, i);
                        let item = call_item(&id, "in_progress", &c.id, &c.name, "");
                        out.push(self.event("response.output_item.added", json!({"output_index": i, "item": item})));
                        self.open = Some(Open::Call { id, call_id: c.id, name: c.name, arguments: String::new() });
                    }
                    if let Some(Open::Call { id, arguments, .. }) = &mut self.open
                        && !c.arguments.is_empty()
                    {
                        arguments.push_str(&c.arguments);
                        let v = json!({"item_id": id, "output_index": self.output.len(), "delta": c.arguments});
                        out.push(Self::stamp(&self.seq, "response.function_call_arguments.delta", v));
                    }
                }
            }
            Ev::Finished(f) => {
                if self.open.is_none() && self.output.is_empty() {
                    // An empty answer is still one (empty) message, as the JSON answer has.
                    self.open_message(&mut out);
                }
                let status = final_status(&f);
                self.close_as(&mut out, status);
                let items = std::mem::take(&mut self.output);
                let r = self.response(status, items, Some(&f));
                let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
                out.push(self.event(kind, json!({"response": r})));
            }
        }
        out
    }

    fn error(&self, e: &ApiError) -> Chunk {
        let body = e.body();
        let inner = body.get("error").cloned().unwrap_or(Value::Null);
        self.event("error", json!({"code": inner.get("code"), "message": e.message, "param": e.param, "error": inner}))
    }

    fn done(&self) -> Option<Chunk> {
        None
    }
}
