//! `zeta.mlx.v1.Generation.Embed`: one embedding per input with an embedding model. Inputs are
//! queued a window at a time, so they run together in the batched steps (with whatever else the
//! model is serving) without one large request filling the engine's queue; the answer comes when
//! the last is pooled. Matryoshka truncation (`dimensions`) is
//! applied here, for gRPC and HTTP callers alike.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;
use zeta_engine::{EngineError, Event, Prompt};
use zeta_proto::v1;

use crate::error::DaemonError;
use crate::registry::Registry;

/// The input's prompt, or why it cannot be one.
fn prompt(i: usize, input: &v1::EmbedInput) -> Result<Prompt, DaemonError> {
    match &input.input {
        Some(v1::embed_input::Input::Text(t)) if t.is_empty() => {
            Err(DaemonError::invalid(format!("inputs[{i}]"), "is an empty string"))
        }
        Some(v1::embed_input::Input::Text(t)) => Ok(Prompt::Text(t.clone())),
        Some(v1::embed_input::Input::Tokens(t)) => Ok(Prompt::Tokens(t.ids.clone())),
        None => Err(DaemonError::invalid(format!("inputs[{i}]"), "set text or tokens")),
    }
}

/// An engine error about one input, naming it: `prompt[j]` (a token id) becomes `inputs[i][j]`.
fn about(i: usize, e: EngineError) -> DaemonError {
    match e {
        EngineError::InvalidArgument { field, message } if field != "model" => {
            let rest = field.strip_prefix("prompt").or_else(|| field.strip_prefix("input")).unwrap_or("");
            DaemonError::invalid(format!("inputs[{i}]{rest}"), message)
        }
        EngineError::ContextOverflow { prompt_tokens, max_tokens, context_length, message, .. } => {
            EngineError::ContextOverflow {
                prompt_tokens,
                max_tokens,
                context_length,
                field: format!("inputs[{i}]"),
                message,
            }
            .into()
        }
        other => other.into(),
    }
}

/// Inputs in flight at once per request: enough to fill a batch, few enough that one large
/// request neither fills the engine's queue nor shuts other requests out of it.
const WINDOW: usize = 16;

/// Runs an `Embed` call.
pub async fn embed(
    registry: &Arc<Registry>,
    request: Request<v1::EmbedRequest>,
) -> Result<Response<v1::EmbedResponse>, Status> {
    let caller = super::caller(&request);
    let req = request.into_inner();
    let request_id = super::request_id(&req.request_id)?;
    let span = tracing::info_span!("embed", request_id = %request_id, model = %zeta_proto::edge::quote(&req.model), inputs = req.inputs.len());
    async {
        let max = zeta_proto::edge::MAX_EMBED_INPUTS;
        if req.inputs.is_empty() || req.inputs.len() > max {
            return Err(DaemonError::invalid("inputs", format!("{} inputs; give 1 to {max}", req.inputs.len())));
        }
        let prompts = req.inputs.iter().enumerate().map(|(i, x)| prompt(i, x)).collect::<Result<Vec<_>, _>>()?;
        if let Some((id, false)) = registry.kind_on_disk(&req.model, caller) {
            return Err(EngineError::wrong_kind(&id, false).into());
        }
        let lease = registry.acquire(&req.model, caller).await?;
        let engine = lease.engine.clone();
        let dimension = engine.info().embedding.map(|e| e.dimension);
        if let (Some(d), Some(full)) = (req.dimensions, dimension)
            && (d == 0 || d as usize > full)
        {
            return Err(DaemonError::invalid(
                "dimensions",
                format!("{d} is outside 1..={full}, the model's dimension"),
            ));
        }
        // Tokenize everything first, off the async threads; queueing token ids is then cheap.
        let size = prost::Message::encoded_len(&req);
        let tokenizer = engine.clone();
        let prompts = super::off_runtime(size, move || {
            prompts
                .iter()
                .enumerate()
                .map(|(i, p)| tokenizer.tokenize(p).map(Prompt::Tokens).map_err(|e| about(i, e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| lease.as_named(e))?;
        let mut out = v1::EmbedResponse { model: lease.id.clone(), ..Default::default() };
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; prompts.len()];
        let mut flight = std::collections::VecDeque::new();
        let mut next = 0;
        while next < prompts.len() || !flight.is_empty() {
            while next < prompts.len() && flight.len() < WINDOW {
                match engine.embed(format!("{request_id}/{next}"), &prompts[next]) {
                    Ok(s) => {
                        flight.push_back((next, s));
                        next += 1;
                    }
                    // The queue is full: wait for one of ours to finish, unless none is queued.
                    Err(EngineError::Busy { .. }) if !flight.is_empty() => break,
                    Err(e) => return Err(lease.as_named(about(next, e))),
                }
            }
            let Some((i, mut s)) = flight.pop_front() else { continue };
            loop {
                match s.next().await {
                    Some(Event::Embedding(v)) => vectors[i] = Some(v),
                    Some(Event::Finished { usage, .. }) => {
                        out.prompt_tokens += usage.prompt_tokens as u32;
                        break;
                    }
                    Some(Event::Error(e)) => return Err(about(i, e)),
                    Some(_) => {}
                    None => return Err(DaemonError::Draining),
                }
            }
        }
        for v in vectors {
            let v = v.ok_or_else(|| DaemonError::Internal("an embedding finished without its vector".into()))?;
            let values = match req.dimensions {
                Some(d) => zeta_engine::embedding::truncate(v, d as usize),
                None => v,
            };
            out.embeddings.push(v1::Embedding { values });
        }
        tracing::info!(prompt_tokens = out.prompt_tokens, "embedded");
        Ok(Response::new(out))
    }
    .instrument(span)
    .await
    .map_err(Status::from)
}
