//! `POST /v1/completions`: the legacy text completion API, JSON or SSE.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use super::stream::{self, Chunker};
use crate::convert::{self, CompletionOptions};
use crate::dto::request::CompletionRequest;
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

fn legacy_logprobs(l: &[v1::TokenLogprob], offset: &mut u32) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    for t in l {
        out.tokens.push(t.token.clone());
        out.token_logprobs.push(t.logprob);
        out.top_logprobs.push(t.top.iter().map(|a| (a.token.clone(), a.logprob)).collect::<BTreeMap<_, _>>());
        out.text_offset.push(*offset);
        *offset += t.token.len() as u32;
    }
    out
}

async fn run(state: &AppState, request_id: &str, body: LimitedBody) -> Result<Response, ApiError> {
    let dto: CompletionRequest = body.parse().await?;
    let (req, opts) = convert::completion(&dto, request_id)?;
    let id = format!("cmpl-{request_id}");
    if opts.stream {
        let chunker = CompletionChunker { id, created: super::now(), model: opts.model.clone(), opts, offset: 0 };
        return stream::stream(state, req, chunker).await;
    }
    let g = stream::gather(state, req).await?;
    let f = g.finished.as_ref().expect("gather checks");
    let body = Completion {
        id,
        object: "text_completion",
        created: super::now(),
        model: stream::reported_model(&opts.model, g.model),
        choices: vec![CompletionChoice {
            index: 0,
            text: g.text,
            logprobs: opts.logprobs.then(|| legacy_logprobs(&g.logprobs, &mut 0)),
            finish_reason: Some(stream::finish_reason(f)),
        }],
        usage: Some(stream::usage(f)),
        system_fingerprint: None,
    };
    Ok(Json(body).into_response())
}

struct CompletionChunker {
    id: String,
    created: u64,
    model: String,
    opts: CompletionOptions,
    offset: u32,
}

impl CompletionChunker {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> String {
        let c = Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            system_fingerprint: None,
        };
        serde_json::to_string(&c).expect("chunks serialize")
    }
}

impl Chunker for CompletionChunker {
    fn on_event(&mut self, event: Ev) -> Vec<String> {
        match event {
            Ev::Started(s) => {
                self.model = stream::reported_model(&self.model, s.model);
                vec![]
            }
            Ev::Delta(d) => {
                let logprobs = self.opts.logprobs.then(|| legacy_logprobs(&d.logprobs, &mut self.offset));
                if d.text.is_empty() && logprobs.is_none() {
                    return vec![];
                }
                vec![self.chunk(vec![CompletionChoice { index: 0, text: d.text, logprobs, finish_reason: None }], None)]
            }
            Ev::Finished(f) => {
                let mut out = vec![self.chunk(
                    vec![CompletionChoice {
                        index: 0,
                        text: String::new(),
                        logprobs: None,
                        finish_reason: Some(stream::finish_reason(&f)),
                    }],
                    None,
                )];
                if self.opts.include_usage {
                    out.push(self.chunk(vec![], Some(stream::usage(&f))));
                }
                out
            }
        }
    }
}
