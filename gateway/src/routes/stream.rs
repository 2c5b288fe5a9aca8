//! Turning the daemon's `GenerateEvent` stream into an HTTP response. For SSE, a pump task reads
//! the gRPC stream and feeds the response body; when the client disconnects, the body is dropped,
//! the pump sees its channel close and drops the gRPC stream, and the daemon frees the sequence's
//! slot within one decode step. Errors after the stream started become one SSE event carrying the
//! OpenAI error body.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use zeta_proto::v1;

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

/// Streams `grpc` to the client as SSE, ending with `data: [DONE]`.
pub fn sse(mut grpc: Streaming<v1::GenerateEvent>, mut chunker: impl Chunker, keep_alive: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
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
                        let e = ApiError::from(tonic::Status::unavailable(
                            "the daemon ended the stream before it finished",
                        ));
                        let _ = tx.send(Ok(Event::default().data(e.body().to_string()))).await;
                        return;
                    }
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
                Err(status) => {
                    let e = ApiError::from(status);
                    tracing::warn!(error = %e.message, "generation failed mid-stream");
                    let _ = tx.send(Ok(Event::default().data(e.body().to_string()))).await;
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

/// Reads a generation to its end, within `limit`.
pub async fn gather(mut grpc: Streaming<v1::GenerateEvent>, limit: Duration) -> Result<Gathered, ApiError> {
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
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(())) => {}
        Ok(Err(status)) => return Err(status.into()),
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                Some("timeout"),
                format!("the request took longer than the gateway's limit of {} s", limit.as_secs()),
            ));
        }
    }
    if g.finished.is_none() {
        return Err(tonic::Status::unavailable("the daemon ended the stream before it finished").into());
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

/// The daemon's reply to the call, or the error as an HTTP response.
pub async fn start(
    state: &crate::AppState,
    req: v1::GenerateRequest,
) -> Result<Streaming<v1::GenerateEvent>, ApiError> {
    state.generation().generate(req).await.map(|r| r.into_inner()).map_err(ApiError::from)
}
