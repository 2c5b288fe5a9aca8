//! `zeta.mlx.v1.Models`: list, load (streaming download and load progress), unload, tokenize.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use zeta_engine::Prompt;
use zeta_engine::tools::Shaper;
use zeta_proto::v1;

use crate::convert;
use crate::error::DaemonError;
use crate::registry::{LoadStatus, ModelState, ModelView, Registry, unix_seconds};

/// `zeta.mlx.v1.Models` over the registry: listing, loading with progress, unloading, tokenizing.
pub struct ModelsService {
    registry: Arc<Registry>,
}

impl ModelsService {
    /// A service over the registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        ModelsService { registry }
    }
}

/// A registry view as the wire `ModelInfo`.
pub fn model_info(v: &ModelView) -> v1::ModelInfo {
    use v1::ModelState as S;
    let state = match v.state {
        ModelState::Loaded => S::Loaded,
        ModelState::Loading => S::Loading,
        ModelState::Downloading => S::Downloading,
        ModelState::Failed => S::Failed,
        ModelState::Unloaded => S::Unloaded,
        ModelState::Unloading => S::Unloading,
    };
    let info = v.info.as_ref();
    let stats = v.stats.as_ref();
    v1::ModelInfo {
        id: v.id.clone(),
        source: v.source.clone(),
        state: state as i32,
        is_default: v.is_default,
        pinned: v.pinned,
        architecture: info.map(|i| i.arch.clone()).unwrap_or_default(),
        context_length: info.map(|i| i.context_length as u32).unwrap_or(0),
        weight_bytes: info.map(|i| i.weight_bytes as u64).unwrap_or(0),
        kv_cache_bytes: stats.map(|s| s.kv_bytes as u64).unwrap_or(0),
        loaded_at_unix: v.loaded_at.map(unix_seconds).unwrap_or(0),
        last_used_unix: v.last_used.map(unix_seconds).unwrap_or(0),
        active_requests: stats.map(|s| s.active as u32).unwrap_or(0),
        queued_requests: stats.map(|s| s.queued as u32).unwrap_or(0),
        error: v.error.clone().unwrap_or_default(),
        load_count: v.loads,
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<v1::LoadProgress, Status>> + Send>>;

#[tonic::async_trait]
impl v1::models_server::Models for ModelsService {
    async fn list_models(&self, _: Request<v1::ListModelsRequest>) -> Result<Response<v1::ListModelsResponse>, Status> {
        let cfg = self.registry.config();
        Ok(Response::new(v1::ListModelsResponse {
            models: self.registry.list().iter().map(model_info).collect(),
            default_model: cfg.default_model.clone(),
            max_loaded: cfg.max_loaded as u32,
        }))
    }

    type LoadModelStream = ProgressStream;

    async fn load_model(&self, request: Request<v1::LoadModelRequest>) -> Result<Response<ProgressStream>, Status> {
        let caller = super::caller(&request);
        let model = request.into_inner().model;
        let (id, rx) = self.registry.load(&model, caller)?;
        tracing::info!(model = %id, "load requested");
        let registry = self.registry.clone();
        let stream = futures_util::stream::unfold((rx, false), move |(mut rx, done)| {
            let registry = registry.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                let status = rx.borrow_and_update().clone();
                let item = match status {
                    LoadStatus::Ready => {
                        let view = registry.list().into_iter().find(|v| v.id == id);
                        let info = view.as_ref().map(model_info).unwrap_or_default();
                        return Some((
                            Ok(v1::LoadProgress { progress: Some(v1::load_progress::Progress::Loaded(info)) }),
                            (rx, true),
                        ));
                    }
                    LoadStatus::Failed(e) => return Some((Err(Status::from(e)), (rx, true))),
                    LoadStatus::Queued => None,
                    LoadStatus::Downloading(p) => Some(v1::load_progress::Progress::Download(v1::Download {
                        file: p.file.clone(),
                        bytes_done: p.bytes_done,
                        bytes_total: p.bytes_total,
                        files_done: p.files_done as u32,
                        files_total: p.files_total as u32,
                    })),
                    LoadStatus::Loading { done, total } => Some(v1::load_progress::Progress::Loading(v1::Loading {
                        layers_done: done as u32,
                        layers_total: total as u32,
                    })),
                };
                if rx.changed().await.is_err() {
                    // The loader is gone; its last word is in the entry.
                    let view = registry.list().into_iter().find(|v| v.id == id);
                    return match view {
                        Some(v) if v.state == ModelState::Loaded => Some((
                            Ok(v1::LoadProgress {
                                progress: Some(v1::load_progress::Progress::Loaded(model_info(&v))),
                            }),
                            (rx, true),
                        )),
                        v => Some((
                            Err(Status::from(DaemonError::LoadFailed {
                                model: id.clone(),
                                reason: v.and_then(|v| v.error).unwrap_or_else(|| "the load stopped".into()),
                                transient: true,
                            })),
                            (rx, true),
                        )),
                    };
                }
                let item = item.map(|p| v1::LoadProgress { progress: Some(p) });
                Some((Ok(item.unwrap_or(v1::LoadProgress { progress: None })), (rx, false)))
            }
        });
        // Queued placeholders carry no progress; keep only real updates.
        let stream = futures_util::StreamExt::filter(stream, |item| {
            std::future::ready(!matches!(item, Ok(v1::LoadProgress { progress: None })))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn unload_model(
        &self,
        request: Request<v1::UnloadModelRequest>,
    ) -> Result<Response<v1::UnloadModelResponse>, Status> {
        let caller = super::caller(&request);
        let req = request.into_inner();
        let u = self.registry.unload(&req.model, req.force, caller)?;
        Ok(Response::new(v1::UnloadModelResponse { was_loaded: u.was_loaded, still_running: u.still_running }))
    }

    async fn tokenize(&self, request: Request<v1::TokenizeRequest>) -> Result<Response<v1::TokenizeResponse>, Status> {
        use v1::tokenize_request::Input;
        let caller = super::caller(&request);
        let req = request.into_inner();
        // Checked before the model is acquired: a bad request must not load (and evict) anything.
        let chat_only = !req.tools.is_empty() || req.tool_choice.is_some() || !req.chat_template_kwargs_json.is_empty();
        if matches!(req.input, Some(Input::Text(_))) && chat_only {
            let field = if !req.tools.is_empty() {
                "tools"
            } else if req.tool_choice.is_some() {
                "tool_choice"
            } else {
                "chat_template_kwargs"
            };
            return Err(DaemonError::invalid(
                field,
                "only applies to a chat input; a text input is tokenized as it is",
            )
            .into());
        }
        convert::tool_choice(&req.tools, req.tool_choice.as_ref())?;
        let size = prost::Message::encoded_len(&req);
        let (chat, req) = super::off_runtime(size, move || {
            let chat = match &req.input {
                Some(Input::Text(_)) => None,
                Some(Input::Chat(c)) => {
                    let tools: &[v1::Tool] =
                        if convert::hides_tools(req.tool_choice.as_ref()) { &[] } else { &req.tools };
                    Some(convert::chat(c, tools, &req.chat_template_kwargs_json)?)
                }
                None => return Err(DaemonError::invalid("input", "set one of text or chat")),
            };
            Ok((chat, req))
        })
        .await?;
        let lease = self.registry.acquire(&req.model, caller).await?;
        let engine = lease.engine.clone();
        let (count, ids, tokens, texts) = super::off_runtime(size, move || {
            let ids = match (&req.input, chat) {
                (Some(Input::Text(t)), _) => engine.tokenizer().encode(t, req.add_special_tokens)?,
                (_, Some(prompt)) => {
                    // Rendered as a generation renders it, a forced call's opening included.
                    let how = convert::shaping(&req.tools, req.tool_choice.as_ref(), false);
                    let rendered = Shaper::render(&engine, &prompt, &how)?.map(|r| r.text).unwrap_or_default();
                    engine.tokenize(&Prompt::Rendered(rendered))?
                }
                _ => unreachable!("checked before the model was acquired"),
            };
            let count = ids.len() as u32;
            if req.count_only {
                return Ok((count, vec![], vec![], vec![]));
            }
            let (tokens, texts) = if req.return_tokens {
                let tok = engine.tokenizer();
                ids.iter().map(|&i| (tok.id_to_token(i).unwrap_or_default(), tok.piece(i).0)).unzip()
            } else {
                (vec![], vec![])
            };
            Ok((count, ids, tokens, texts))
        })
        .await
        .map_err(|e| lease.as_named(e))?;
        Ok(Response::new(v1::TokenizeResponse {
            count,
            ids,
            tokens,
            texts,
            context_length: lease.engine.info().context_length as u32,
            model: lease.id.clone(),
        }))
    }
}
