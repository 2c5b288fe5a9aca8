//! `POST /v1/embeddings`: `{"model", "input", "encoding_format", "dimensions"}` → OpenAI's list of
//! embeddings, through the daemon's `Embed`. `input` is a string, an array of strings, an array
//! of token ids, or an array of such arrays; `encoding_format` `float` (default) or `base64`
//! (little-endian float32s, as the official clients decode them); `dimensions` truncates and
//! re-normalises (Matryoshka). The daemon's errors name `inputs[i]`; here they name `input[i]`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};
use zeta_proto::v1;

use crate::convert::{integer, model, present, string, type_name};
use crate::error::ApiError;
use crate::{AppState, LimitedBody, RequestId};

/// `POST /v1/embeddings`.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct EmbeddingsRequest {
    pub model: Option<Value>,
    pub input: Option<Value>,
    pub encoding_format: Option<Value>,
    pub dimensions: Option<Value>,
    pub user: Option<Value>,
}

fn token_ids(a: &[Value], field: &str) -> Result<v1::EmbedInput, ApiError> {
    let ids = a
        .iter()
        .enumerate()
        .map(|(j, t)| {
            t.as_u64().filter(|&t| t <= u32::MAX as u64).map(|t| t as u32).ok_or_else(|| {
                ApiError::invalid(
                    format!("{field}[{j}]"),
                    format!("a token id is an integer in 0..=4294967295, got {t}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(ApiError::invalid(field, "is an empty list of token ids"));
    }
    Ok(v1::EmbedInput { input: Some(v1::embed_input::Input::Tokens(v1::TokenIds { ids })) })
}

fn text(s: &str, field: &str) -> Result<v1::EmbedInput, ApiError> {
    if s.is_empty() {
        return Err(ApiError::invalid(field, "is an empty string"));
    }
    Ok(v1::EmbedInput { input: Some(v1::embed_input::Input::Text(s.to_string())) })
}

/// `input` as the daemon's inputs.
pub fn inputs(v: &Option<Value>) -> Result<Vec<v1::EmbedInput>, ApiError> {
    let max = zeta_proto::edge::MAX_EMBED_INPUTS;
    let out = match present(v) {
        None => return Err(ApiError::invalid("input", "'input' is required")),
        Some(Value::String(s)) => vec![text(s, "input")?],
        Some(Value::Array(a)) if a.is_empty() => return Err(ApiError::invalid("input", "'input' must not be empty")),
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => vec![token_ids(a, "input")?],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let field = format!("input[{i}]");
                match x {
                    Value::String(s) => text(s, &field),
                    Value::Array(ids) => token_ids(ids, &field),
                    other => Err(ApiError::invalid(
                        field,
                        format!("each input is a string or an array of token ids, got {}", type_name(other)),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid(
                "input",
                format!("'input' must be a string or an array, got {}", type_name(other)),
            ));
        }
    };
    if out.len() > max {
        return Err(ApiError::invalid("input", format!("{} inputs is above the maximum {max}", out.len())));
    }
    Ok(out)
}

/// Whether to answer in base64.
fn base64_format(v: &Option<Value>) -> Result<bool, ApiError> {
    match string(v, "encoding_format")? {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "encoding_format",
            format!("'{}' is not one of float, base64", zeta_proto::edge::quote(other)),
        )),
    }
}

/// Standard base64 (with padding) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The daemon's error about `inputs[i]` as the HTTP field `input[i]` (a lone input is `input`).
fn http_field(mut e: ApiError, single: bool) -> ApiError {
    if let Some(p) = e.param.clone().and_then(|p| p.strip_prefix("inputs").map(String::from)) {
        let field = if single && p.starts_with("[0]") { format!("input{}", &p[3..]) } else { format!("input{p}") };
        // The message names it as the daemon does; the client knows it by this.
        e.message = e.message.replace(&format!("inputs{p}"), &field);
        e.param = Some(field);
    }
    e
}

/// `POST /v1/embeddings`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    body: LimitedBody,
) -> Result<Json<Value>, ApiError> {
    let dto: EmbeddingsRequest = body.parse().await?;
    let model = model(&dto.model)?;
    let inputs = inputs(&dto.input)?;
    let single = !matches!(present(&dto.input), Some(Value::Array(a)) if !a.iter().all(Value::is_number));
    let b64 = base64_format(&dto.encoding_format)?;
    let dimensions = integer(&dto.dimensions, "dimensions", 1, 1 << 20)?.map(|d| d as u32);
    let _ = string(&dto.user, "user")?;
    let req = v1::EmbedRequest { model: model.clone(), inputs, dimensions, request_id: id.0 };
    let limit = state.config.request_timeout;
    let r = match tokio::time::timeout(limit, state.generation().embed(req)).await {
        Ok(r) => r.map_err(|s| http_field(ApiError::from(s), single))?.into_inner(),
        Err(_) => return Err(ApiError::timeout(limit)),
    };
    let data: Vec<Value> = r
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if b64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let model = super::output::reported_model(&model, r.model);
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }

    #[test]
    fn inputs_take_every_shape_and_name_the_bad_one() {
        let of = |v: Value| inputs(&Some(v));
        assert_eq!(of(json!("hi")).unwrap().len(), 1);
        assert_eq!(of(json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(of(json!([1, 2, 3])).unwrap().len(), 1);
        assert_eq!(of(json!([[1, 2], [3]])).unwrap().len(), 2);
        for (v, param) in [
            (json!(""), "input"),
            (json!([]), "input"),
            (json!(["a", ""]), "input[1]"),
            (json!(["a", 5]), "input[1]"),
            (json!([[1, -2]]), "input[0][1]"),
            (json!(5), "input"),
        ] {
            assert_eq!(of(v.clone()).unwrap_err().param.as_deref(), Some(param), "{v}");
        }
        assert_eq!(of(json!(vec!["x"; 2049])).unwrap_err().param.as_deref(), Some("input"));
    }
}
