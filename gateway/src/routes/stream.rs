//! Turning the daemon's `GenerateEvent` stream into an HTTP response. For SSE, a pump task reads
//! the gRPC stream and feeds the response body; when the client disconnects, the body is dropped,
//! the pump sees its channel close and drops the gRPC stream, and the daemon frees the sequence's
//! slot within one decode step. Errors after the stream started become one SSE event carrying the
//! OpenAI error body.
//!
//! The request's time limit covers the whole request: the daemon's acceptance (a model load
//! included) and, for JSON answers, the generation to its end. A stream whose call is not
//! accepted within a second (the model is loading) starts its response anyway and sends
//! keep-alive comments meanwhile, so clients and proxies do not give up on a silent connection;
//! an error then arrives as the stream's one error event.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use zeta_proto::v1;

use crate::AppState;
use crate::error::ApiError;

/// The model name a response reports: the one the request named (an alias stays the alias the
/// client used), or the daemon's name for the model it chose when the request named none.
pub fn reported_model(requested: &str, served: String) -> String {
    if requested.is_empty() { served } else { requested.to_string() }
}

/// Builds the chunks of one SSE response from daemon events.
pub trait Chunker: Send + 'static {
    /// JSON payloads for one event.
    fn on_event(&mut self, event: v1::generate_event::Event) -> Vec<String>;
}

type Call = Pin<Box<dyn Future<Output = Result<tonic::Response<Streaming<v1::GenerateEvent>>, tonic::Status>> + Send>>;

fn call(state: &AppState, req: v1::GenerateRequest) -> Call {
    let mut client = state.generation();
    Box::pin(async move { client.generate(req).await })
}

fn accepted(
    r: Result<tonic::Response<Streaming<v1::GenerateEvent>>, tonic::Status>,
) -> Result<Streaming<v1::GenerateEvent>, ApiError> {
    r.map(tonic::Response::into_inner).map_err(ApiError::from)
}

/// Streams a generation to the client as SSE, ending with `data: [DONE]`. Errors before the
/// daemon accepts the call keep their HTTP status unless the call waited past a second.
pub async fn stream(state: &AppState, req: v1::GenerateRequest, chunker: impl Chunker) -> Result<Response, ApiError> {
    let limit = state.config.request_timeout;
    let mut pending = call(state, req);
    let grace = Duration::from_secs(1).min(limit);
    match tokio::time::timeout(grace, &mut pending).await {
        Ok(r) => Ok(sse(Start::Now(accepted(r)?), chunker, state.config.keep_alive)),
        Err(_) => Ok(sse(Start::Pending(pending, limit - grace), chunker, state.config.keep_alive)),
    }
}

enum Start {
    Now(Streaming<v1::GenerateEvent>),
    Pending(Call, Duration),
}

fn sse(start: Start, mut chunker: impl Chunker, keep_alive: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let error_event = |e: ApiError| Ok(Event::default().data(e.body().to_string()));
        let mut grpc = match start {
            Start::Now(g) => g,
            Start::Pending(pending, left) => {
                let r = tokio::select! {
                    _ = tx.closed() => return,
                    r = tokio::time::timeout(left, pending) => r,
                };
                match r.map(accepted) {
                    Ok(Ok(g)) => g,
                    Ok(Err(e)) => {
                        let _ = tx.send(error_event(e)).await;
                        return;
                    }
                    Err(_) => {
                        let _ = tx.send(error_event(ApiError::timeout(left))).await;
                        return;
                    }
                }
            }
        };
        let mut finished = false;
        loop {
            let msg = tokio::select! {
                _ = tx.closed() => {
                    tracing::info!("client went away; cancelling the generation");
                    return;
                }
                m = grpc.message() => m,
            };
            match msg {
                Ok(Some(v1::GenerateEvent { event: Some(ev) })) => {
                    finished |= matches!(ev, v1::generate_event::Event::Finished(_));
                    for data in chunker.on_event(ev) {
                        if tx.send(Ok(Event::default().data(data))).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if !finished {
                        let _ = tx.send(error_event(ApiError::stream_cut())).await;
                        return;
                    }
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
                Err(status) => {
                    let e = ApiError::from(status);
                    tracing::warn!(error = %e.message, "generation failed mid-stream");
                    let _ = tx.send(error_event(e)).await;
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}

/// Everything a finished generation produced, for non-streaming responses.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The model that served it.
    pub model: String,
    /// Answer text.
    pub text: String,
    /// Reasoning text.
    pub reasoning: String,
    /// Tool calls: (id, name, arguments).
    pub calls: Vec<(String, String, String)>,
    /// Per-token log-probabilities.
    pub logprobs: Vec<v1::TokenLogprob>,
    /// Final event.
    pub finished: Option<v1::Finished>,
    /// Prompt tokens reused from the cache.
    pub cached_tokens: u32,
}

/// Runs a generation to its end, all within the request's time limit.
pub async fn gather(state: &AppState, req: v1::GenerateRequest) -> Result<Gathered, ApiError> {
    let limit = state.config.request_timeout;
    let deadline = Instant::now() + limit;
    let grpc = match tokio::time::timeout(limit, call(state, req)).await {
        Ok(r) => accepted(r)?,
        Err(_) => return Err(ApiError::timeout(limit)),
    };
    read_all(grpc, deadline.saturating_duration_since(Instant::now()), limit).await
}

async fn read_all(
    mut grpc: Streaming<v1::GenerateEvent>,
    left: Duration,
    limit: Duration,
) -> Result<Gathered, ApiError> {
    let mut g = Gathered::default();
    let read = async {
        while let Some(ev) = grpc.message().await? {
            match ev.event {
                Some(v1::generate_event::Event::Started(s)) => {
                    g.model = s.model;
                    g.cached_tokens = s.cached_tokens;
                }
                Some(v1::generate_event::Event::Delta(d)) => {
                    g.text.push_str(&d.text);
                    g.reasoning.push_str(&d.reasoning_text);
                    for c in d.tool_calls {
                        let i = c.index as usize;
                        if i >= g.calls.len() {
                            g.calls.resize(i + 1, Default::default());
                        }
                        let call = &mut g.calls[i];
                        if !c.id.is_empty() {
                            call.0 = c.id;
                        }
                        if !c.name.is_empty() {
                            call.1 = c.name;
                        }
                        call.2.push_str(&c.arguments);
                    }
                    g.logprobs.extend(d.logprobs);
                }
                Some(v1::generate_event::Event::Finished(f)) => g.finished = Some(f),
                None => {}
            }
        }
        Ok::<_, tonic::Status>(())
    };
    match tokio::time::timeout(left, read).await {
        Ok(Ok(())) => {}
        Ok(Err(status)) => return Err(status.into()),
        Err(_) => return Err(ApiError::timeout(limit)),
    }
    if g.finished.is_none() {
        return Err(ApiError::stream_cut());
    }
    Ok(g)
}

/// OpenAI's name for a finish reason.
pub fn finish_reason(f: &v1::Finished) -> &'static str {
    match v1::FinishReason::try_from(f.reason).unwrap_or(v1::FinishReason::Stop) {
        v1::FinishReason::Length => "length",
        v1::FinishReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

/// Usage in OpenAI's shape.
pub fn usage(f: &v1::Finished) -> crate::dto::response::Usage {
    let u = f.usage.unwrap_or_default();
    crate::dto::response::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: crate::dto::response::PromptTokensDetails { cached_tokens: u.cached_tokens },
    }
}

/// Chat-style log-probabilities.
pub fn chat_logprobs(l: &[v1::TokenLogprob]) -> crate::dto::response::ChoiceLogprobs {
    use crate::dto::response::{ChoiceLogprobs, TokenLogprob, TopLogprob};
    ChoiceLogprobs {
        content: l
            .iter()
            .map(|t| TokenLogprob {
                token: t.token.clone(),
                logprob: t.logprob,
                bytes: t.token.as_bytes().to_vec(),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|a| TopLogprob {
                        token: a.token.clone(),
                        logprob: a.logprob,
                        bytes: a.token.as_bytes().to_vec(),
                    })
                    .collect(),
            })
            .collect(),
    }
}
