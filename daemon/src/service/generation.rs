//! `zeta.mlx.v1.Generation`: streams one generation per call. The response stream owns the
//! engine's event stream and the model lease, so a client that goes away drops both: the
//! sequence leaves the batch within one step and the model may be evicted again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use zeta_engine::{Event, FinishReason, Generation as EngineStream};
use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use crate::convert;
use crate::error::DaemonError;
use crate::registry::{Lease, Registry};
use crate::service::shaping::Shaper;

/// The service.
pub struct GenerationService {
    registry: Arc<Registry>,
}

impl GenerationService {
    /// A service over the registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        GenerationService { registry }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::GenerateEvent, Status>> + Send>>;

struct State {
    events: EngineStream,
    lease: Lease,
    request_id: String,
    shaper: Shaper,
    queue: VecDeque<Result<v1::GenerateEvent, Status>>,
    done: bool,
    span: tracing::Span,
}

fn event(e: Ev) -> v1::GenerateEvent {
    v1::GenerateEvent { event: Some(e) }
}

#[tonic::async_trait]
impl v1::generation_server::Generation for GenerationService {
    type GenerateStream = EventStream;

    async fn generate(&self, request: Request<v1::GenerateRequest>) -> Result<Response<EventStream>, Status> {
        let peer = super::peer_uid(&request);
        let caller = super::caller(&request);
        let req = request.into_inner();
        let request_id = if req.request_id.is_empty() { super::new_request_id() } else { req.request_id.clone() };
        let model = zeta_proto::edge::quote(&req.model).into_owned();
        let span = tracing::info_span!("generate", request_id = %request_id, model = %model, peer_uid = ?peer, ?caller);
        let registry = self.registry.clone();
        let (events, lease, shaper) = async {
            let lease = registry.acquire(&req.model, caller).await?;
            let (engine, defaults, id) = (lease.engine.clone(), lease.defaults.clone(), request_id.clone());
            let size = prost::Message::encoded_len(&req);
            let (events, shaper) = super::off_runtime(size, move || {
                let mut engine_req = convert::generate(&req, &defaults, &id)?;
                let shaper = Shaper::prepare(&mut engine_req, &req, &engine)?;
                let events = engine.submit(engine_req).map_err(DaemonError::from)?;
                Ok((events, shaper))
            })
            .await?;
            tracing::info!(model = %lease.id, prompt_tokens = events.prompt_tokens, "accepted");
            Ok::<_, DaemonError>((events, lease, shaper))
        }
        .instrument(span.clone())
        .await
        .inspect_err(|e| tracing::info!(parent: &span, error = %e, "refused"))?;
        let state = State { events, lease, request_id, shaper, queue: VecDeque::new(), done: false, span };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            if let Some(item) = s.queue.pop_front() {
                return Some((item, s));
            }
            if s.done {
                return None;
            }
            let item = match s.events.next().await {
                Some(Event::Started { prompt_tokens, cached_tokens }) => Ok(event(Ev::Started(v1::Started {
                    request_id: s.request_id.clone(),
                    model: s.lease.id.clone(),
                    prompt_tokens: prompt_tokens as u32,
                    cached_tokens: cached_tokens as u32,
                }))),
                Some(Event::Delta { text, tokens, logprobs }) => {
                    let shaped = s.shaper.push(&text);
                    Ok(event(Ev::Delta(v1::Delta {
                        text: shaped.text,
                        reasoning_text: shaped.reasoning,
                        tool_calls: shaped.calls,
                        token_ids: tokens,
                        logprobs: convert::logprobs(&logprobs),
                    })))
                }
                Some(Event::Finished { reason, usage, timings }) => {
                    s.done = true;
                    match s.shaper.finish() {
                        Ok(tail) if !(tail.text.is_empty() && tail.reasoning.is_empty() && tail.calls.is_empty()) => {
                            s.queue.push_back(Ok(event(Ev::Delta(v1::Delta {
                                text: tail.text,
                                reasoning_text: tail.reasoning,
                                tool_calls: tail.calls,
                                ..Default::default()
                            }))));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(parent: &s.span, error = %e, "failed");
                            return Some((Err(Status::from(e)), s));
                        }
                    }
                    let called = s.shaper.called_tools();
                    tracing::info!(parent: &s.span, ?reason, prompt_tokens = usage.prompt_tokens,
                        completion_tokens = usage.completion_tokens, cached_tokens = usage.cached_tokens, "finished");
                    s.queue.push_back(Ok(event(Ev::Finished(v1::Finished {
                        reason: match reason {
                            FinishReason::Stop if called => v1::FinishReason::ToolCalls,
                            FinishReason::Stop => v1::FinishReason::Stop,
                            FinishReason::Length => v1::FinishReason::Length,
                        } as i32,
                        usage: Some(v1::Usage {
                            prompt_tokens: usage.prompt_tokens as u32,
                            completion_tokens: usage.completion_tokens as u32,
                            cached_tokens: usage.cached_tokens as u32,
                        }),
                        timings: Some(v1::Timings {
                            queued_seconds: timings.queued.as_secs_f64(),
                            prefill_seconds: timings.prefill.as_secs_f64(),
                            decode_seconds: timings.decode.as_secs_f64(),
                        }),
                    }))));
                    s.queue.pop_front().expect("just queued")
                }
                Some(Event::Error(e)) => {
                    s.done = true;
                    tracing::warn!(parent: &s.span, error = %e, "failed");
                    Err(Status::from(DaemonError::from(e)))
                }
                None => {
                    s.done = true;
                    Err(Status::from(DaemonError::Draining))
                }
            };
            Some((item, s))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
