//! The model routes: `GET /v1/models`, `GET /v1/models/{id}` (ids may hold a `/`, as hub ids
//! do), and the original design's `GET /v1/models/loaded`, `POST /v1/models/{alias}/load` and
//! `POST /v1/models/{alias}/unload`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;
use zeta_proto::v1;

use crate::AppState;
use crate::dto::response::{Model, ModelList};
use crate::error::ApiError;

async fn all(state: &AppState) -> Result<v1::ListModelsResponse, ApiError> {
    Ok(state.models().list_models(v1::ListModelsRequest {}).await?.into_inner())
}

fn model(m: &v1::ModelInfo) -> Model {
    let created = if m.loaded_at_unix > 0 { m.loaded_at_unix as u64 } else { super::now() };
    Model { id: m.id.clone(), object: "model", created, owned_by: "zeta-mlx" }
}

fn state_name(s: i32) -> &'static str {
    match v1::ModelState::try_from(s).unwrap_or(v1::ModelState::Unspecified) {
        v1::ModelState::Loaded => "loaded",
        v1::ModelState::Loading => "loading",
        v1::ModelState::Downloading => "downloading",
        v1::ModelState::Failed => "failed",
        v1::ModelState::Unloading => "unloading",
        _ => "unloaded",
    }
}

fn details(m: &v1::ModelInfo) -> serde_json::Value {
    json!({
        "id": m.id, "source": m.source, "state": state_name(m.state), "default": m.is_default, "pinned": m.pinned,
        "architecture": m.architecture, "context_length": m.context_length, "weight_bytes": m.weight_bytes,
        "kv_cache_bytes": m.kv_cache_bytes, "active_requests": m.active_requests, "queued_requests": m.queued_requests,
        "loaded_at": m.loaded_at_unix, "last_used": m.last_used_unix, "load_count": m.load_count,
        "error": (!m.error.is_empty()).then_some(&m.error),
    })
}

/// `GET /v1/models`: configured and loaded models.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<ModelList>, ApiError> {
    let r = all(&state).await?;
    Ok(Json(ModelList { object: "list", data: r.models.iter().map(model).collect() }))
}

/// `GET /v1/models/loaded`.
pub async fn loaded(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let r = all(&state).await?;
    let in_state = |s: v1::ModelState| r.models.iter().filter(move |m| m.state == s as i32);
    let loaded: Vec<&v1::ModelInfo> = in_state(v1::ModelState::Loaded).collect();
    Ok(Json(json!({
        "object": "list",
        "loaded": loaded.iter().map(|m| &m.id).collect::<Vec<_>>(),
        "max_loaded": r.max_loaded,
        "default": r.default_model,
        "data": loaded.iter().map(|m| details(m)).collect::<Vec<_>>(),
        // Unloaded with requests still running: their memory is still in use until they end.
        "unloading": in_state(v1::ModelState::Unloading).map(details).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/models/{id}`.
pub async fn get_one(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Model>, ApiError> {
    let r = all(&state).await?;
    r.models.iter().find(|m| m.id == id).map(|m| Json(model(m))).ok_or_else(|| ApiError::model_not_found(&id))
}

/// `POST /v1/models/{alias}/load` and `POST /v1/models/{alias}/unload`.
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = state.config.request_timeout;
    let answer = if let Some(alias) = rest.strip_suffix("/load") {
        tokio::time::timeout(limit, load(&state, alias)).await.unwrap_or_else(|_| Err(ApiError::timeout(limit)))
    } else if let Some(alias) = rest.strip_suffix("/unload") {
        unload(&state, alias).await
    } else {
        Err(ApiError::no_route("POST", &format!("/v1/models/{rest}")))
    };
    answer.map(Json)
}

async fn load(state: &AppState, alias: &str) -> Result<serde_json::Value, ApiError> {
    let mut progress = state.models().load_model(v1::LoadModelRequest { model: alias.into() }).await?.into_inner();
    while let Some(p) = progress.message().await? {
        if let Some(v1::load_progress::Progress::Loaded(info)) = p.progress {
            return Ok(json!({"success": true, "model": info.id, "state": "loaded", "details": details(&info)}));
        }
    }
    Err(ApiError::load_unfinished(alias))
}

async fn unload(state: &AppState, alias: &str) -> Result<serde_json::Value, ApiError> {
    // Over HTTP a pinned model stays; `zeta unload --force` is the way to unload it.
    let req = v1::UnloadModelRequest { model: alias.into(), force: false };
    let r = state.models().unload_model(req).await?.into_inner();
    let state = match (r.was_loaded, r.still_running) {
        (false, _) => "not_loaded",
        (true, 0) => "unloaded",
        (true, _) => "unloading",
    };
    Ok(json!({"success": r.was_loaded, "model": alias, "state": state, "still_running": r.still_running}))
}
