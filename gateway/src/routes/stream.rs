//! Streaming a generation as Server-Sent Events. A pump task reads
//! the gRPC stream and feeds the response body; when the client disconnects, the body is dropped,
//! the pump sees its channel close and drops the gRPC stream, and the daemon frees the sequence's
//! slot within one decode step. Errors after the stream started become one SSE event carrying the
//! OpenAI error body.
//!
//! The request's time limit covers the daemon's acceptance (a model load included). A stream
//! whose call is not accepted within a second (the model is loading) starts its response anyway
//! and sends keep-alive comments meanwhile, so clients and proxies do not give up on a silent
//! connection; an error then arrives as the stream's one error event.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use zeta_proto::v1;

use crate::AppState;
use crate::error::ApiError;

/// One SSE event: an optional event name (Anthropic's API names every event; OpenAI's names
/// none) and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// The `event:` field.
    pub event: Option<&'static str>,
    /// The `data:` field.
    pub data: String,
}

impl Chunk {
    /// An unnamed event.
    pub fn data(data: impl Into<String>) -> Chunk {
        Chunk { event: None, data: data.into() }
    }

    /// A named event.
    pub fn named(event: &'static str, data: impl Into<String>) -> Chunk {
        Chunk { event: Some(event), data: data.into() }
    }

    fn into_event(self) -> Event {
        let e = Event::default().data(self.data);
        match self.event {
            Some(name) => e.event(name),
            None => e,
        }
    }
}

/// Builds the chunks of one SSE response from daemon events, in one API's shape.
pub trait Chunker: Send + 'static {
    /// The chunks for one event.
    fn on_event(&mut self, event: v1::generate_event::Event) -> Vec<Chunk>;

    /// The chunk an error after the stream started becomes (OpenAI: its error body).
    fn error(&self, e: &ApiError) -> Chunk {
        Chunk::data(e.body().to_string())
    }

    /// What ends a finished stream (OpenAI: `data: [DONE]`).
    fn done(&self) -> Option<Chunk> {
        Some(Chunk::data("[DONE]"))
    }
}

/// A `Generate` call in flight.
pub type Call =
    Pin<Box<dyn Future<Output = Result<tonic::Response<Streaming<v1::GenerateEvent>>, tonic::Status>> + Send>>;

/// Starts a `Generate` call (marked as made for an HTTP client).
pub fn call(state: &AppState, req: v1::GenerateRequest) -> Call {
    let mut client = state.generation();
    Box::pin(async move { client.generate(req).await })
}

/// The event stream of an accepted call, or the daemon's refusal as an API error.
pub fn accepted(
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
        let error_event = |chunker: &dyn Chunker, e: ApiError| Ok(chunker.error(&e).into_event());
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
                        let _ = tx.send(error_event(&chunker, e)).await;
                        return;
                    }
                    Err(_) => {
                        let _ = tx.send(error_event(&chunker, ApiError::timeout(left))).await;
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
                    for chunk in chunker.on_event(ev) {
                        if tx.send(Ok(chunk.into_event())).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if !finished {
                        let _ = tx.send(error_event(&chunker, ApiError::stream_cut())).await;
                        return;
                    }
                    if let Some(done) = chunker.done() {
                        let _ = tx.send(Ok(done.into_event())).await;
                    }
                    return;
                }
                Err(status) => {
                    let e = ApiError::from(status);
                    tracing::warn!(error = %e.message, "generation failed mid-stream");
                    let _ = tx.send(error_event(&chunker, e)).await;
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}
