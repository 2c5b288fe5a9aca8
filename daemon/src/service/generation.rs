//! `zeta.mlx.v1.Generation`: streams one generation per call. This module owns the call's
//! lifecycle: the model lease, the request's log span, and the response stream, which owns the
//! engine's event stream and the lease, so a client that goes away drops both: the sequence
//! leaves the batch within one step and the model may be evicted again. Rendering and output
//! shaping are the engine's (`zeta_engine::tools::Shaper`); wire types are `convert`'s.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use zeta_engine::tools::Shaper;
use zeta_engine::{Event, Generation as EngineStream};
use zeta_proto::v1;

use crate::config::SamplingDefaults;
use crate::convert;
use crate::error::DaemonError;
use crate::registry::{Lease, Registry};

/// `zeta.mlx.v1.Generation` over the registry: one streamed generation per call.
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
    /// Tokens streamed so far, for the cancellation's log line.
    generated: usize,
    /// Of those, the ones spent reasoning.
    reasoning: usize,
    /// Log-probabilities of tokens whose text the shaper holds back (see [`text_logprobs`]).
    held_logprobs: Vec<zeta_engine::TokenLogprob>,
}

/// The log-probabilities that go with a shaped delta. They belong to the answer's text only, so
/// that the tokens' bytes join into it: a token whose text is held back (a possible marker)
/// waits for the text it becomes, and tokens that became reasoning (`reasoning`: the tokens
/// counted as such, `</think>` included), a tool call or nothing at all (EOS, markup cut short)
/// have none.
fn text_logprobs(
    held: &mut Vec<zeta_engine::TokenLogprob>,
    d: &zeta_engine::tools::ShapedDelta,
    reasoning: bool,
    logprobs: Vec<zeta_engine::TokenLogprob>,
) -> Vec<zeta_engine::TokenLogprob> {
    // Text first: a token whose text comes out beside a call's start keeps its figures.
    let text = !reasoning && !d.text.is_empty();
    if text {
        let mut out = std::mem::take(held);
        out.extend(logprobs);
        out
    } else if reasoning || !d.reasoning.is_empty() || !d.calls.is_empty() {
        held.clear();
        Vec::new()
    } else {
        held.extend(logprobs);
        Vec::new()
    }
}

/// The response stream dropped before the generation ended: the client went away (or its
/// deadline passed). The engine's stream and the lease go with it; the log says so, as it says
/// `finished` for the others.
impl Drop for State {
    fn drop(&mut self) {
        if !self.done {
            tracing::info!(parent: &self.span, completion_tokens = self.generated, "cancelled: the client went away");
        }
    }
}

#[tonic::async_trait]
impl v1::generation_server::Generation for GenerationService {
    type GenerateStream = EventStream;

    async fn generate(&self, request: Request<v1::GenerateRequest>) -> Result<Response<EventStream>, Status> {
        let peer = super::peer_uid(&request);
        let caller = super::caller(&request);
        let req = request.into_inner();
        let request_id = super::request_id(&req.request_id)?;
        let model = zeta_proto::edge::quote(&req.model).into_owned();
        // Plain values, not Rust's `Some(..)`, so a JSON log reads them as numbers and words.
        let caller_name = match caller {
            crate::registry::Caller::Http => "http",
            crate::registry::Caller::Socket => "socket",
        };
        let span = tracing::info_span!("generate", request_id = %request_id, model = %model,
            peer_uid = tracing::field::Empty, caller = caller_name);
        if let Some(uid) = peer {
            span.record("peer_uid", uid);
        }
        let registry = self.registry.clone();
        let (events, lease, shaper) = async {
            if let Some((id, true)) = registry.kind_on_disk(&req.model, caller) {
                return Err(zeta_engine::EngineError::wrong_kind(&id, true).into());
            }
            // What a request can get wrong without the model is refused before the model is
            // acquired: a bad request loads (and evicts) nothing.
            let size = prost::Message::encoded_len(&req);
            let id = request_id.clone();
            let (checked, req) = super::off_runtime(size, move || {
                let checked = convert::generate(&req, &SamplingDefaults::default(), &id)?;
                checked.check()?;
                convert::precheck_grammars(&req, &checked)?;
                Ok((checked, req))
            })
            .await?;
            let lease = registry.acquire(&req.model, caller).await?;
            let (engine, defaults) = (lease.engine.clone(), lease.defaults.clone());
            let (events, shaper) = super::off_runtime(size, move || {
                let mut engine_req = convert::with_defaults(checked, &req, &defaults);
                let how = convert::shaping(&req.tools, req.tool_choice.as_ref(), req.separate_reasoning);
                let shaper = if req.truncate_oldest_turns {
                    let (fitted, shaper) = super::truncate::fit(&engine, engine_req, &how)?;
                    engine_req = fitted;
                    shaper
                } else {
                    Shaper::prepare(&engine, &mut engine_req, &how)?
                };
                let events = engine.submit(engine_req)?;
                Ok((events, shaper))
            })
            .await
            .map_err(|e| lease.as_named(e))?;
            tracing::info!(model = %lease.id, prompt_tokens = events.prompt_tokens, "accepted");
            Ok::<_, DaemonError>((events, lease, shaper))
        }
        .instrument(span.clone())
        .await
        .inspect_err(|e| tracing::info!(parent: &span, error = %e, "refused"))?;
        let state = State {
            events,
            lease,
            request_id,
            shaper,
            queue: VecDeque::new(),
            done: false,
            span,
            generated: 0,
            reasoning: 0,
            held_logprobs: Vec::new(),
        };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            if let Some(item) = s.queue.pop_front() {
                return Some((item, s));
            }
            if s.done {
                return None;
            }
            let item = match s.events.next().await {
                Some(Event::Started { prompt_tokens, cached_tokens }) => {
                    Ok(convert::started(&s.request_id, &s.lease.id, prompt_tokens, cached_tokens))
                }
                Some(Event::Delta { text, tokens, logprobs }) => {
                    s.generated += tokens.len();
                    let was_reasoning = s.shaper.in_reasoning();
                    let shaped = s.shaper.push(&text);
                    let reasoning = was_reasoning || s.shaper.in_reasoning();
                    if reasoning {
                        s.reasoning += tokens.len();
                    }
                    let logprobs = text_logprobs(&mut s.held_logprobs, &shaped, reasoning, logprobs);
                    Ok(convert::delta(shaped, tokens, &logprobs))
                }
                Some(Event::Finished { reason, stop, usage, timings }) => {
                    s.done = true;
                    // Cut short (max_tokens, a stop string): a call in progress is kept as far
                    // as it got, and a forced one that did not finish is no failure.
                    let cut = reason == zeta_engine::FinishReason::Length || stop.is_some();
                    match if cut { s.shaper.finish_cut() } else { s.shaper.finish() } {
                        Ok(tail) if !tail.is_empty() => {
                            let logprobs = text_logprobs(&mut s.held_logprobs, &tail, false, Vec::new());
                            s.queue.push_back(Ok(convert::delta(tail, vec![], &logprobs)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(parent: &s.span, error = %e, "failed");
                            return Some((Err(Status::from(DaemonError::from(e))), s));
                        }
                    }
                    let reason_name = match reason {
                        zeta_engine::FinishReason::Stop => "stop",
                        zeta_engine::FinishReason::Length => "length",
                    };
                    tracing::info!(parent: &s.span, reason = reason_name, prompt_tokens = usage.prompt_tokens,
                        completion_tokens = usage.completion_tokens, cached_tokens = usage.cached_tokens, "finished");
                    let called_tools = s.shaper.called_tools() && !s.shaper.cut_call();
                    let end = convert::End { reason, stop, called_tools, reasoning_tokens: s.reasoning };
                    s.queue.push_back(Ok(convert::finished(end, &usage, &timings)));
                    s.queue.pop_front().expect("just queued")
                }
                Some(Event::Embedding(_)) => {
                    // Generation never yields one (the engine refuses embedding models there).
                    s.done = true;
                    Err(Status::from(DaemonError::Internal("an embedding in a generation stream".into())))
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

    async fn embed(&self, request: Request<v1::EmbedRequest>) -> Result<Response<v1::EmbedResponse>, Status> {
        super::embedding::embed(&self.registry, request).await
    }
}
