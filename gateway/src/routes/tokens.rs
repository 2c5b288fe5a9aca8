//! Token counting: `POST /v1/tokens/count` (`{"model", "text" | "messages", "tools"}` →
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
    let model = convert::model(&dto.model)?;
    let text = dto.text.as_ref().or(dto.prompt.as_ref()).filter(|v| !v.is_null());
    let input = match (text, dto.messages.as_ref().filter(|v| !v.is_null())) {
        (Some(serde_json::Value::String(t)), None) => v1::tokenize_request::Input::Text(t.clone()),
        (Some(_), None) => return Err(ApiError::invalid("text", "'text' must be a string")),
        (None, Some(m)) => v1::tokenize_request::Input::Chat(v1::Chat {
            messages: convert::count_messages(m)?,
            continue_final_message: false,
        }),
        (Some(_), Some(_)) => return Err(ApiError::invalid("messages", "send either 'text' or 'messages', not both")),
        (None, None) => return Err(ApiError::invalid("text", "'text' or 'messages' is required")),
    };
    let req = v1::TokenizeRequest {
        model,
        input: Some(input),
        add_special_tokens: convert::flag(&dto.add_special_tokens, "add_special_tokens")?.unwrap_or(true),
        tools: convert::count_tools(&dto.tools)?,
        return_tokens,
        // A count ships no ids: a 16 MB text is millions of them.
        count_only: !return_tokens,
    };
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
