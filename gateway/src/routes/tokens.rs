//! Token counting: `POST /v1/tokens/count` (`{"model", "text" | "messages", "tools", "tool_choice"}` →
//! `{"count", "context_length"}`) and `POST /v1/tokenize` (also the ids and token strings).
//! Messages go through the model's chat template, so the count is what a chat request would use.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;
use zeta_proto::v1;

use crate::convert;
use crate::dto::request::TokenizeRequest;
use crate::error::ApiError;
use crate::{AppState, LimitedBody};

async fn tokenize_inner(
    state: &AppState,
    body: LimitedBody,
    return_tokens: bool,
) -> Result<v1::TokenizeResponse, ApiError> {
    let dto: TokenizeRequest = body.parse().await?;
    let req = convert::tokenize(&dto, return_tokens)?;
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, state.models().tokenize(req)).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(ApiError::timeout(limit)),
    }
}

/// `POST /v1/tokens/count`.
pub async fn count(State(state): State<Arc<AppState>>, body: LimitedBody) -> Result<Json<serde_json::Value>, ApiError> {
    let r = tokenize_inner(&state, body, false).await?;
    Ok(Json(json!({"object": "token_count", "model": r.model, "count": r.count, "context_length": r.context_length})))
}

/// `POST /v1/tokenize`.
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: LimitedBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = tokenize_inner(&state, body, true).await?;
    Ok(Json(
        json!({"model": r.model, "count": r.count, "context_length": r.context_length, "ids": r.ids, "tokens": r.tokens}),
    ))
}
