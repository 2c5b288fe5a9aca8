//! The one generation route every generating endpoint runs: parse the body, convert it once to
//! the daemon's request, then stream it as SSE or gather it into one JSON answer. An endpoint
//! (chat completions, completions; Responses and Messages next) says only how its body converts,
//! how its chunks look and how its final answer looks, through [`Endpoint`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Streaming;
use zeta_proto::v1;

use super::stream::{self, Chunker};
use crate::error::ApiError;
use crate::{AppState, LimitedBody, RequestId};

/// What one generating endpoint contributes to the shared route.
pub trait Endpoint {
    /// The request body as it arrives.
    type Body: DeserializeOwned + Send + 'static;
    /// What the endpoint keeps of the request to shape its answer.
    type Options: Send + 'static;
    /// Its SSE chunks.
    type Chunker: Chunker;
    /// Its JSON answer.
    type Answer: Serialize;

    /// Validates the body and converts it to the daemon's request.
    fn convert(body: &Self::Body, request_id: &str) -> Result<(v1::GenerateRequest, Self::Options), ApiError>;
    /// Whether the client asked for a stream.
    fn streams(options: &Self::Options) -> bool;
    /// The chunk builder of a streamed answer.
    fn chunker(request_id: &str, options: Self::Options) -> Self::Chunker;
    /// What this API calls the request field a daemon error names, where it has its own name:
    /// the daemon speaks of `constraint` (the schema or grammar the client sent) and of a chat's
    /// `messages`.
    fn field(body: &Self::Body, daemon_param: &str) -> Option<&'static str> {
        let _ = body;
        daemon_param.starts_with("constraint").then_some("response_format")
    }

    /// The answer of a finished generation.
    fn answer(request_id: &str, options: Self::Options, done: Gathered) -> Self::Answer;

    /// An error as this API's clients expect it (OpenAI's envelope unless overridden).
    fn error_response(e: ApiError) -> Response {
        e.into_response()
    }
}

/// The route: `POST` of an endpoint's body.
pub async fn handle<E: Endpoint>(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    body: LimitedBody,
) -> Response {
    run::<E>(&state, &id.0, body).await.unwrap_or_else(E::error_response)
}

async fn run<E: Endpoint>(state: &AppState, request_id: &str, body: LimitedBody) -> Result<Response, ApiError> {
    let dto: E::Body = body.parse().await?;
    let (req, options) = E::convert(&dto, request_id)?;
    let named = |mut e: ApiError| {
        if let Some((daemon, field)) = e.param.clone().and_then(|p| E::field(&dto, &p).map(|f| (p, f))) {
            // The message names the field as the daemon knows it; the client knows it by this.
            e.message = e.message.replace(&daemon, field);
            e.param = Some(field.into());
        }
        e
    };
    if E::streams(&options) {
        return stream::stream(state, req, E::chunker(request_id, options)).await.map_err(named);
    }
    let done = gather(state, req).await.map_err(named)?;
    Ok(Json(E::answer(request_id, options, done)).into_response())
}

/// A tool call of a finished generation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolCall {
    /// Its id (`call_...`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// Everything a finished generation produced, for non-streaming answers.
#[derive(Debug)]
pub struct Gathered {
    /// The model that served it.
    pub model: String,
    /// Answer text.
    pub text: String,
    /// Reasoning text.
    pub reasoning: String,
    /// Tool calls, in order.
    pub calls: Vec<ToolCall>,
    /// Per-token log-probabilities.
    pub logprobs: Vec<v1::TokenLogprob>,
    /// The final event (reason, usage).
    pub finished: v1::Finished,
}

/// Runs a generation to its end, all within the request's time limit.
pub async fn gather(state: &AppState, req: v1::GenerateRequest) -> Result<Gathered, ApiError> {
    let limit = state.config.request_timeout;
    let deadline = Instant::now() + limit;
    let grpc = match tokio::time::timeout(limit, stream::call(state, req)).await {
        Ok(r) => stream::accepted(r)?,
        Err(_) => return Err(ApiError::timeout(limit)),
    };
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), read_all(grpc)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::timeout(limit)),
    }
}

async fn read_all(mut grpc: Streaming<v1::GenerateEvent>) -> Result<Gathered, ApiError> {
    let (mut model, mut text, mut reasoning) = (String::new(), String::new(), String::new());
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut logprobs = Vec::new();
    while let Some(ev) = grpc.message().await? {
        match ev.event {
            Some(v1::generate_event::Event::Started(s)) => model = s.model,
            Some(v1::generate_event::Event::Delta(d)) => {
                text.push_str(&d.text);
                reasoning.push_str(&d.reasoning_text);
                for c in d.tool_calls {
                    let i = c.index as usize;
                    if i >= calls.len() {
                        calls.resize(i + 1, ToolCall::default());
                    }
                    let call = &mut calls[i];
                    if !c.id.is_empty() {
                        call.id = c.id;
                    }
                    if !c.name.is_empty() {
                        call.name = c.name;
                    }
                    call.arguments.push_str(&c.arguments);
                }
                logprobs.extend(d.logprobs);
            }
            Some(v1::generate_event::Event::Finished(finished)) => {
                return Ok(Gathered { model, text, reasoning, calls, logprobs, finished });
            }
            None => {}
        }
    }
    Err(ApiError::stream_cut())
}
